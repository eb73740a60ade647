"""Structural checks (issue 21): one publish path, one lifecycle, no import circle in shared/,
services and the runtime free of the operator tools. They read the code; nothing runs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = [p for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules a file imports, at any depth (type-checking-only imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_shared_has_no_import_circle():
    modules = {_module(p): p for p in (ROOT / "shared").rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    circle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circle.extend([*path[path.index(n):], n] if n in path else [m, n])
                return True
            if n not in state and visit(n, [*path, n]):
                return True
        state[m] = 2
        return False

    assert not any(visit(m, [m]) for m in sorted(graph) if m not in state), " → ".join(circle)


def test_services_and_the_runtime_never_import_the_operator_tools():
    importers = [_rel(p) for p in CODE if not _rel(p).startswith("shared/ops/")
                 and any(i.startswith("shared.ops") for i in _imports(p))]
    assert importers == []


def test_only_the_outbox_writes_outbox_rows():
    """One publish path: every event is written through `shared.messaging.outbox.Outbox`."""
    writers = [_rel(p) for p in CODE if re.search(r"INSERT INTO outbox", p.read_text())]
    assert writers == ["shared/messaging/outbox.py"]


def test_only_the_relay_and_operator_tools_produce_to_kafka():
    """Domain events leave a service only through the relay; producers elsewhere are operator
    tools (publish, replay, the broker's incarnation marker)."""
    allowed = {"shared/messaging/outbox.py", "shared/messaging/kafka.py"}
    producers = [_rel(p) for p in CODE
                 if re.search(r"AIOKafkaProducer|\.send_and_wait\(|broker\.publish\(", p.read_text())
                 and _rel(p) not in allowed and not _rel(p).startswith("shared/ops/")]
    assert producers == []


def test_the_lifecycle_is_defined_once():
    definitions = [_rel(p) for p in CODE
                   if re.search(r"^class State\(|^def (on_connection_started|on_connection_ended|passivation_outcome"
                                r"|disposition_outcome)\(", p.read_text(), re.M)]
    assert definitions == ["shared/lifecycle.py"]


def test_handlers_change_state_only_through_their_unit_of_work():
    """No handler reaches for a connection: they use `ctx.store` and `ctx.outbox` (or `uow`)."""
    offenders = [_rel(p) for p in (ROOT / "services").rglob("handlers.py") if "ctx.conn" in p.read_text()]
    assert offenders == []


def test_services_never_import_each_other():
    """Each service owns its data and talks to the others only through topics (SPEC §3)."""
    crossings = []
    for path in (ROOT / "services").rglob("*.py"):
        own = path.relative_to(ROOT / "services").parts[0]
        crossings += [(_rel(path), i) for i in _imports(path)
                      if i.startswith("services.") and i.split(".")[1] != own]
    assert crossings == []


def test_infrastructure_outages_are_waited_out_in_one_place():
    """One retry policy (issue 21): only `shared.messaging.retry` sleeps the `OUTAGE` backoff;
    every other wait for the database or key store goes through `through_outages`."""
    sleepers = [_rel(p) for p in CODE if "OUTAGE.sleep(" in p.read_text()]
    assert sleepers == ["shared/messaging/retry.py"]
