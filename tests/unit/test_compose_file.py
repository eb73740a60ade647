"""docker-compose.yml read as an operator's tool would read it (issue 8).

No Docker engine runs here, so the file is checked by parsing: every service it runs
exists, every environment variable it sets is one the settings know (or the Kafka and
PostgreSQL images' own), and the operational promises hold (health, restarts, volumes,
no secret in the file or the image).
"""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

from shared.settings import SERVED_NAMES, SERVICE_NAMES, PlatformSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Variables the official images read themselves (apache/kafka: KAFKA_* → server.properties).
IMAGE_VARIABLES = {
    "apache/kafka": (re.compile(r"^KAFKA_[A-Z0-9_]+$"), {"CLUSTER_ID"}),
    "postgres": (re.compile(r"^POSTGRES_(USER|PASSWORD|DB|INITDB_ARGS|HOST_AUTH_METHOD)$"
                            r"|^(CONTACTS|CONSENT|RETENTION|BILLING|PORTAL)_DB_PASSWORD$"), {"PGDATA"}),
}


def settings_classes() -> list[type[PlatformSettings]]:
    classes: list[type[PlatformSettings]] = [PlatformSettings]
    for name in SERVED_NAMES:  # the portal's settings are platform settings, not a service's (issue 19)
        module = importlib.import_module(f"services.{name}.settings")
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, (ServiceSettings, PlatformSettings)) and c.__module__ == module.__name__]
    return classes


def known_variables() -> set[str]:
    known: set[str] = set()
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "") or ""
        known |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return known - {"SERVICE_NAME"}  # each service sets its own; set globally it would merge schemas


def app_services() -> dict[str, dict]:
    return {name: svc for name, svc in SERVICES.items() if svc.get("image", "").startswith("rekisteri")}


def test_every_served_service_exists_and_all_four_and_the_portal_run():
    served = {}
    for name, svc in app_services().items():
        command = svc["command"]
        if command[0] == "serve":
            assert (ROOT / "services" / command[1] / "app.py").is_file(), f"{name}: no services/{command[1]}/app.py"
            served[name] = command[1]
    assert sorted(served.values()) == sorted(SERVED_NAMES)


def test_every_environment_variable_is_known_to_the_settings_or_the_image():
    known = known_variables()
    for name, svc in SERVICES.items():
        image = svc.get("image", "")
        pattern, extra = next(((p, e) for prefix, (p, e) in IMAGE_VARIABLES.items() if image.startswith(prefix)),
                              (None, set()))
        for variable in svc.get("environment", {}):
            ok = variable in extra or (pattern.match(variable) if pattern else variable in known)
            assert ok, f"{name}: {variable} is not a setting the container reads"


def test_a_misspelt_variable_would_be_caught():
    assert "KAFKA_BOOTSTRAP_SERVERS" in known_variables()
    assert "KAFKA_BOOTSTRAP_SERVER" not in known_variables()


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_services_are_healthchecked_on_readyz_and_restart(name):
    """SPEC §7: /readyz answers when the database and the broker do."""
    svc = SERVICES[name]
    port = svc["environment"][f"{name.upper()}_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
    assert svc["restart"] in {"always", "unless-stopped", "on-failure"}
    assert svc["environment"]["HTTP_HOST"] == "0.0.0.0"
    assert svc["environment"]["KAFKA_ENABLE_IDEMPOTENCE"] == "true"  # SPEC §8 on Apache Kafka
    assert int(svc["environment"]["KAFKA_SESSION_TIMEOUT_MS"]) >= 6000
    assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert any(p.endswith(f":{port}") for p in svc["ports"])


def test_the_portal_is_healthchecked_reaches_the_services_and_needs_no_broker():
    """Issue 19: the portal on 127.0.0.1:8000 by default, ready on /readyz, calling the four
    services by their compose names with the shared token secret; it consumes no topic."""
    portal = SERVICES["portal"]
    env = portal["environment"]
    assert portal["command"] == ["serve", "portal"]
    assert f"http://127.0.0.1:{env['PORTAL_PORT']}/readyz" in " ".join(portal["healthcheck"]["test"])
    assert portal["restart"] in {"always", "unless-stopped", "on-failure"}
    assert env["HTTP_HOST"] == "0.0.0.0" and env["PORTAL_COOKIE_SECURE"] == "true"
    assert portal["ports"] == ["${REKISTERI_BIND_ADDRESS:-127.0.0.1}:${PORTAL_HOST_PORT:-8000}:8000"]
    for name in SERVICE_NAMES:
        port = SERVICES[name]["environment"][f"{name.upper()}_PORT"]
        assert env[f"PORTAL_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert name in portal["depends_on"]
    assert portal["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert env["REKISTERI_TOKEN_SECRET"] == SERVICES["contacts"]["environment"]["REKISTERI_TOKEN_SECRET"]
    assert not {v for v in env if v.startswith("KAFKA_")} and "volumes" not in portal


def test_kafka_is_kraft_and_state_is_on_volumes():
    kafka, postgres = SERVICES["kafka"], SERVICES["postgres"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    volumes = set(COMPOSE["volumes"])
    assert any(v.split(":")[0] in volumes and v.endswith(kafka["environment"]["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])
    assert any(v.split(":")[0] in volumes and postgres["environment"]["PGDATA"].startswith(v.split(":")[1])
               for v in postgres["volumes"])
    assert "healthcheck" in kafka and "healthcheck" in postgres
    assert SERVICES["topics"]["command"] == ["topics", "create"] and SERVICES["topics"]["restart"] == "no"


def test_no_secret_in_the_compose_file_or_the_image():
    secret = SERVICES["contacts"]["environment"]["REKISTERI_TOKEN_SECRET"]
    assert secret.startswith("${REKISTERI_TOKEN_SECRET:?")  # the operator must set it
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "SECRET" not in dockerfile.split("# No secret is baked in")[1].split("\n", 1)[1]
    assert "PASSWORD" not in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_every_interpolated_variable_is_in_the_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, re.MULTILINE))
    assert interpolated <= documented, interpolated - documented


def test_suppression_and_master_keys_are_their_own_required_secrets():
    """R8, SPEC §9: the keys are never derived from another secret, and every service needs them."""
    for service in ("contacts", "consent", "retention", "billing"):
        for variable in ("REKISTERI_SUPPRESSION_KEY", "REKISTERI_MASTER_KEY"):
            assert SERVICES[service]["environment"][variable].startswith(f"${{{variable}:?")


def test_operations_guide_documents_every_setting():
    """SPEC §7: configuration by environment variables, documented."""
    guide = (ROOT / "docs" / "OPERATIONS.md").read_text()
    missing = sorted(v for v in known_variables() if f"`{v}`" not in guide)
    assert not missing, f"docs/OPERATIONS.md lacks {missing}"
