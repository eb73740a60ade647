"""deploy/k8s read as kubectl would read it (issue 8): the four services and the portal
(issue 19) with probes, settings the code knows, secrets by reference, and the topic-creation Job."""
from __future__ import annotations

from pathlib import Path

import yaml

from shared.settings import SERVED_NAMES, SERVICE_NAMES
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
    assert sorted(deployments) == sorted(SERVED_NAMES)
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
            if e["name"] == "REKISTERI_SIGNING_KEY":  # each service's own entry of the signing Secret
                assert e["valueFrom"]["secretKeyRef"] == {"name": "rekisteri-signing", "key": deployment["metadata"]["name"]}
            elif "SECRET" in e["name"] or "KEY" in e["name"] or e["name"] == "DATABASE_URL":
                assert e["valueFrom"]["secretKeyRef"]["name"] == "rekisteri-secrets", e["name"]
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


def pod_specs() -> dict[str, dict]:
    """Every pod template: the five Deployments and the topics Job."""
    return {name: d["spec"]["template"]["spec"] for kind in ("Deployment", "Job") for name, d in of_kind(kind).items()}


def test_every_pod_is_hardened_the_same_way():
    """Issue 17 (checkov): seccomp RuntimeDefault, no service-account token, non-root, no
    privilege escalation, read-only root, no capabilities — the topics Job too."""
    specs = pod_specs()
    assert "rekisteri-topics" in specs and set(SERVED_NAMES) <= set(specs)
    accounts = of_kind("ServiceAccount")
    for name, spec in specs.items():
        assert spec["automountServiceAccountToken"] is False, name
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 10000, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_every_container_has_cpu_and_memory_requests_and_limits():
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"


def test_images_are_pinned_never_latest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for image in kustomization["images"]:
        pin = image.get("digest") or image.get("newTag", "")
        assert pin and pin != "latest", image
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag not in {"", "latest"} or "@sha256:" in container["image"], name
            assert container["imagePullPolicy"] == "Always", name


def policies() -> list[dict]:
    return list(of_kind("NetworkPolicy").values())


def matches(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector: matchLabels and matchExpressions (In, NotIn)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        inside = labels.get(expression["key"]) in expression["values"]
        if inside != {"In": True, "NotIn": False}[expression["operator"]]:
            return False
    return True


def selects(policy: dict, labels: dict) -> bool:
    return matches(policy["spec"]["podSelector"], labels)


def allowed(direction: str, labels: dict) -> set[int]:
    """The ports the namespace's policies open for a pod with these labels."""
    key = "ingress" if direction == "Ingress" else "egress"
    ports: set[int] = set()
    for policy in policies():
        if direction in policy["spec"]["policyTypes"] and selects(policy, labels):
            for rule in policy["spec"].get(key, []):
                ports |= {p["port"] for p in rule["ports"]}
    return ports


def test_network_is_denied_by_default():
    deny = [p for p in policies() if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1
    assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]


def test_each_service_takes_traffic_only_on_its_port_and_reaches_postgresql_kafka_and_dns():
    for name, deployment in of_kind("Deployment").items():
        if name == "portal":
            continue  # no Kafka: the next test
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        assert allowed("Ingress", labels) == {port}, name
        assert allowed("Egress", labels) == {5432, 9092, 53}, name


def test_portal_reaches_postgresql_dns_and_the_four_services_apis_but_not_kafka():
    """Issue 19: the portal consumes no topic; it calls the services over HTTP."""
    deployments = of_kind("Deployment")
    portal = deployments["portal"]["spec"]["template"]
    ports = {deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
             for name in SERVICE_NAMES}
    assert allowed("Ingress", portal["metadata"]["labels"]) == {8000}
    assert allowed("Egress", portal["metadata"]["labels"]) == {5432, 53} | ports
    to_services = of_kind("NetworkPolicy")["egress-portal-services"]["spec"]["egress"][0]["to"][0]["podSelector"]
    assert {name for name, d in deployments.items() if matches(to_services, d["spec"]["template"]["metadata"]["labels"])
            } == set(SERVICE_NAMES)
    env = {e["name"]: e for e in portal["spec"]["containers"][0]["env"]}
    for name in SERVICE_NAMES:
        service_port = of_kind("Service")[name]["spec"]["ports"][0]["port"]
        assert env[f"PORTAL_{name.upper()}_URL"]["value"] == f"http://{name}:{service_port}"
    assert "REKISTERI_SIGNING_KEY" not in env


def test_topics_job_reaches_only_kafka_and_dns():
    labels = of_kind("Job")["rekisteri-topics"]["spec"]["template"]["metadata"]["labels"]
    assert allowed("Ingress", labels) == set()
    assert allowed("Egress", labels) == {9092, 53}


def test_billing_autoscales_within_its_useful_replicas():
    """deploy/SCALING.md: billing is useful up to the partitions of `usage-recorded`."""
    from shared.messaging.topics import CATALOGUE

    hpa = of_kind("HorizontalPodAutoscaler")["billing"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "billing"}
    assert of_kind("PodDisruptionBudget")["billing"]["spec"]["minAvailable"] < hpa["minReplicas"]
    assert hpa["maxReplicas"] == CATALOGUE["usage-recorded"].partitions
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_every_checkov_skip_says_why():
    for doc in manifests():
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check.startswith("CKV") and len(reason) > 20, f"{doc['metadata']['name']}: {value}"
