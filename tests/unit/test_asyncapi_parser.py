"""The official AsyncAPI parser (`@asyncapi/parser`) finds nothing to say about our documents
(issue 17): not an error, not a warning, not a hint, for the register's and each service's.

It runs under Node.js (tests/asyncapi/validate.mjs). The npm package is installed once into a
cache directory outside the repository (`REKISTERI_TEST_NODE_CACHE`, default
`~/.cache/rekisteri-tests/asyncapi-parser-<version>`), without install scripts; later runs
reuse it. Without Node.js and npm the test is skipped, saying so.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.messaging.asyncapi import build_asyncapi

PARSER_VERSION = "3.6.6"
SCRIPT = Path(__file__).resolve().parents[1] / "asyncapi" / "validate.mjs"
SERVICES = ("contacts", "consent", "retention", "billing")


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rekisteri-tests"
    return Path(os.environ.get("REKISTERI_TEST_NODE_CACHE", default)) / f"asyncapi-parser-{PARSER_VERSION}"


@pytest.fixture(scope="session")
def parser_modules() -> Path:
    """node_modules holding the pinned parser: installed on first use, then reused."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        pytest.skip("Node.js/npm not installed: the official AsyncAPI parser check is skipped")
    prefix = _cache_dir()
    modules = prefix / "node_modules"
    if not (modules / "@asyncapi" / "parser" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--cache", str(prefix / "npm-cache"), "--no-save",
             "--no-audit", "--no-fund", "--ignore-scripts", f"@asyncapi/parser@{PARSER_VERSION}"],
            check=False, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"npm could not install @asyncapi/parser@{PARSER_VERSION}: {done.stderr[-2000:]}")
    return modules


def _diagnostics(modules: Path, documents: dict[str, dict], tmp_path: Path) -> dict[str, list[dict]]:
    paths = []
    for name, document in documents.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(str(path))
    done = subprocess.run(["node", str(SCRIPT), str(modules), *paths], check=False, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {Path(line["document"]).stem: line["diagnostics"] for line in lines}


def test_the_official_parser_reports_nothing_on_any_document(parser_modules, tmp_path):
    documents = {"register": build_asyncapi(), **{s: build_asyncapi(s) for s in SERVICES}}
    found = _diagnostics(parser_modules, documents, tmp_path)
    assert set(found) == set(documents)
    assert {name: diagnostics for name, diagnostics in found.items() if diagnostics} == {}


def test_the_parser_does_check_bindings_and_operations(parser_modules, tmp_path):
    """A broken document is reported: the check above would otherwise prove nothing."""
    binding, operation = build_asyncapi("billing"), build_asyncapi("billing")
    binding["channels"]["usage-recorded"]["bindings"]["kafka"]["partitions"] = "six"
    operation["operations"]["billing-receives-usage-recorded"]["action"] = "consume"
    found = _diagnostics(parser_modules, {"binding": binding, "operation": operation}, tmp_path)
    assert any(d["severity"] == 0 and d["path"].endswith("partitions") for d in found["binding"])
    assert any(d["severity"] == 0 and d["path"].endswith(".action") for d in found["operation"])
