"""/metrics and deploy/observability/ (issue 17): the default collectors and build info on
every service's registry, lag per partition, and alert rules and a dashboard that name
only metrics the code exports (or a short list still to come)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "rekisteri-rules.yml"
DASHBOARD = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())

# Named by the rules and the dashboard before the code exports them: each rule stays silent
# until its metric appears. Remove an entry when its metric lands (the test below says so).
TO_COME = {
}
# Suffixes the exposition adds to a family's name, by the constructor that declares it.
SUFFIXES = {"Counter": ["_total", "_created"], "Histogram": ["_bucket", "_sum", "_count", "_created"],
            "Summary": ["_sum", "_count", "_created"], "Gauge": [""], "Info": ["_info"]}
DECLARATION = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
METRIC_NAME = re.compile(r"(?<![\w:])((?:rekisteri|process|python)_[a-z0-9_]+)(?![\w:])")  # not inside a recorded name


def exposition(metrics: Metrics) -> dict[str, dict]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {sample.name: sample.labels for family in families for sample in family.samples}


def declared_metrics() -> set[str]:
    """Every series name the code declares (shared/ and services/), plus the default collectors'."""
    names: set[str] = set()
    for top in ("shared", "services"):
        for path in (ROOT / top).rglob("*.py"):
            for kind, name in DECLARATION.findall(path.read_text()):
                names |= {name + suffix for suffix in SUFFIXES[kind]}
    return names | set(exposition(Metrics("probe")))


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in DASHBOARD["templating"]["list"] if "definition" in v]
    return exprs


def test_metrics_carry_the_default_process_and_platform_collectors():
    names = set(exposition(Metrics("contacts")))
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"} <= names
    assert {"python_info", "python_gc_collections_total"} <= names


def test_build_info_names_the_service_version_and_commit(monkeypatch):
    monkeypatch.setenv("REKISTERI_COMMIT", "0123abc")
    labels = exposition(Metrics("billing"))["rekisteri_build_info"]
    assert labels["service"] == "billing" and labels["commit"] == "0123abc"
    assert re.match(r"\d+\.\d+", labels["version"])


def test_two_services_in_one_process_keep_their_own_registries():
    """Several runtimes share a test process: a second registry must not collide."""
    first, second = Metrics("contacts"), Metrics("consent")
    first.outbox_backlog.set(5)
    assert "rekisteri_outbox_backlog 5.0" in first.render().decode()
    assert "rekisteri_outbox_backlog 0.0" in second.render().decode()


def test_consumer_lag_is_exported_per_group_topic_and_partition():
    metrics = Metrics("billing")
    metrics.set_consumer_lag("billing.usage-recorded", "usage-recorded", {0: 7, 5: 0})
    text = metrics.render().decode()
    assert 'rekisteri_consumer_partition_lag{group="billing.usage-recorded",partition="0",topic="usage-recorded"} 7.0' in text
    assert 'partition="5",topic="usage-recorded"} 0.0' in text


def test_every_metric_the_rules_and_dashboard_name_is_exported_or_still_to_come():
    known = declared_metrics() | set(TO_COME)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = {name for expr in [r["expr"] for r in rules()] + dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert used - known == set(), "named but neither exported nor listed in TO_COME"
    landed = set(TO_COME) & declared_metrics()
    assert landed == set(), f"now exported, remove from TO_COME: {landed}"
    series = {name for expr in dashboard_exprs() for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr)}
    assert series <= recorded, f"the dashboard reads series no rule records: {series - recorded}"


def test_the_alerts_the_operators_need_are_there_with_severity_and_summary():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    for name in ("RekisteriOutboxBacklog", "RekisteriOutboxSetAside", "RekisteriDeadLettersGrowing",
                 "RekisteriDispositionsOverdue", "RekisteriRequestsOverdue", "RekisteriConsumerLag"):
        assert name in alerts, name
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name


def test_dashboard_panels_have_unique_ids_and_fit_the_grid():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); rules not checked")
    return binary


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_the_series_they_watch_and_not_below_their_thresholds():
    """deploy/observability/rekisteri-rules.test.yml: synthetic series, expected alerts."""
    result = subprocess.run([promtool(), "test", "rules", "rekisteri-rules.test.yml"], cwd=OBSERVABILITY,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_the_runtime_lag_job_sets_the_per_partition_gauge(monkeypatch):
    """shared/runtime.py `_report_consumer_lag`: what `consumer_lag` reads reaches /metrics."""
    import asyncio
    from types import SimpleNamespace

    from shared.messaging import lag as lag_module
    from shared.messaging.lag import Lag
    from shared.runtime import _report_consumer_lag

    runtime = SimpleNamespace(name="billing", consumers={}, stopping=asyncio.Event(), metrics=Metrics("billing"),
                              settings=SimpleNamespace(kafka_bootstrap_servers="unused:9092",
                                                       kafka_client_options=lambda: {}))

    async def fake_lag(bootstrap, groups, **_options):
        runtime.stopping.set()  # one pass
        return [Lag("billing", "usage-recorded", 2, 9, {0: 4, 1: 5})]

    monkeypatch.setattr(lag_module, "consumer_lag", fake_lag)
    await asyncio.wait_for(_report_consumer_lag(runtime, interval_s=0.01), timeout=5)
    text = runtime.metrics.render().decode()
    assert 'rekisteri_consumer_lag{topic="usage-recorded"} 9.0' in text
    assert 'rekisteri_consumer_partition_lag{group="billing",partition="1",topic="usage-recorded"} 5.0' in text
