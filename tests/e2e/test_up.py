"""`rekisteri up` as a new user runs it (SPEC §7): PostgreSQL, broker, topics and all four
services come up, `READY` is printed once every /readyz answers, and Ctrl-C stops all of
it with no orphan processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.settings import SERVICE_NAMES
from shared.ops.stack import free_port
from tests.e2e.processes import alive, descendants
from tests.helpers import scaled


def _all_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of `pids` runs; those still running after `timeout`."""
    deadline = time.monotonic() + scaled(timeout)
    while (running := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


@pytest.mark.slow
def test_up_reaches_ready_and_ctrl_c_leaves_no_orphans(private_tmp: Path) -> None:
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = dict(os.environ)
    env.update({
        "REKISTERI_DATA_DIR": str(private_tmp / "data"),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "PORTAL_PORT": str(free_port()),  # never the default 8000: another stack may hold it
    })
    proc = subprocess.Popen([sys.executable, "-m", "shared.ops.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + scaled(120)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.strip() == "READY":
                break
        assert "READY" in lines, "\n".join(lines[-30:])
        for name, port in ports.items():
            assert any(f":{port}" in line and name in line for line in lines), f"{name} endpoint not printed"
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True}
        # Issue 17: the CLI run with no variable talks to this stack, from its endpoints file.
        endpoints = json.loads((private_tmp / "data" / "endpoints.json").read_text())
        assert endpoints["DATABASE_URL"] == env["DATABASE_URL"]
        cli_env = {k: v for k, v in env.items() if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}}
        outbox = subprocess.run([sys.executable, "-m", "shared.ops.cli", "outbox", "--json"], env=cli_env,
                                capture_output=True, text=True, timeout=60)
        assert outbox.returncode == 0, outbox.stderr
        assert {row["service"] for row in json.loads(outbox.stdout)} >= set(SERVICE_NAMES)
        assert "endpoints.json, written by rekisteri up" in outbox.stderr
        tree = descendants(proc.pid)
        assert len(tree) >= 6  # postgres, broker, four services
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=scaled(60))
        assert proc.returncode == 0
        assert _all_gone(tree, timeout=5) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
