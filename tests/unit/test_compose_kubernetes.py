"""deploy/k8s read as kubectl would read it (issue 8): the four services with probes,
settings the code knows, secrets by reference, and the topic-creation Job."""
from __future__ import annotations

from pathlib import Path

import yaml

from shared.settings import SERVICE_NAMES
from tests.unit.test_compose_file import known_variables

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def manifests() -> list[dict]:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    docs = []
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization lists a missing {name}"
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_each_service_has_a_deployment_with_readiness_and_liveness_probes():
    """SPEC §7: /readyz (database and broker answer), /healthz (alive)."""
    deployments = of_kind("Deployment")
    assert sorted(deployments) == sorted(SERVICE_NAMES)
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        port = container["ports"][0]["containerPort"]
        env = {e["name"]: e for e in container["env"]}
        assert env[f"{name.upper()}_PORT"]["value"] == str(port)


def test_services_route_to_their_deployments():
    services, deployments = of_kind("Service"), of_kind("Deployment")
    for name, service in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


def test_settings_are_known_and_secrets_come_from_the_secret():
    known = known_variables()
    config = of_kind("ConfigMap")["rekisteri-config"]["data"]
    assert set(config) <= known, set(config) - known
    assert config["HTTP_HOST"] == "0.0.0.0" and config["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert not {"DATABASE_URL", "REKISTERI_TOKEN_SECRET", "REKISTERI_SUPPRESSION_KEY", "REKISTERI_MASTER_KEY"} & set(config)
    for deployment in of_kind("Deployment").values():
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            assert e["name"] in known, e["name"]
            if "SECRET" in e["name"] or "KEY" in e["name"] or e["name"] == "DATABASE_URL":
                assert e["valueFrom"]["secretKeyRef"]["name"] == "rekisteri-secrets"
    assert "Secret" not in {d["kind"] for d in manifests()}  # the operator creates it


def test_topic_job_creates_the_catalogue():
    job = of_kind("Job")["rekisteri-topics"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["topics", "create"]


def test_scaling_document_matches_the_catalogue():
    """deploy/SCALING.md lists every topic with the catalogue's partitions and key."""
    from shared.messaging.topics import CATALOGUE

    text = (K8S.parent / "SCALING.md").read_text()
    for name, spec in CATALOGUE.items():
        assert f"| `{name}` | {spec.partitions} | `{spec.key}` |" in text, f"SCALING.md: {name} is stale or missing"
