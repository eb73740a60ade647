"""`make run` time to READY: `rekisteri up` from a cold start (empty data directory) and a
warm one (data kept), on free ports. Prints JSON."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.settings import SERVICE_NAMES
from shared.ops.stack import free_port


def time_to_ready(data_dir: Path) -> float:
    env = dict(os.environ)
    env.update({
        "REKISTERI_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        **{f"{name.upper()}_PORT": str(free_port()) for name in SERVICE_NAMES},
    })
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shared.ops.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "READY":
                return time.perf_counter() - started
        raise RuntimeError("rekisteri up exited before READY")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        cold = time_to_ready(data_dir)
        warm = time_to_ready(data_dir)
    print(json.dumps({"bench": "startup", "make_run_to_ready_cold_s": round(cold, 2),
                      "make_run_to_ready_warm_s": round(warm, 2)}))


if __name__ == "__main__":
    main()
