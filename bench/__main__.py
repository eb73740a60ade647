"""`make bench`: run every benchmark under bench/, print their figures and keep them as
JSON (bench/results/<timestamp>.json and latest.json) to compare runs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def printed_figures(stdout: str) -> dict:
    """Every JSON object a benchmark printed at the start of a line, on one line or indented."""
    decoder = json.JSONDecoder()
    figures: dict = {}
    at = stdout.find("{")
    while at != -1:
        if at == 0 or stdout[at - 1] == "\n":
            try:
                found, end = decoder.raw_decode(stdout, at)
                if isinstance(found, dict):
                    figures.update(found)
                at = stdout.find("{", end)
                continue
            except ValueError:
                pass
        at = stdout.find("{", at + 1)
    return figures


def run(module: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}"], capture_output=True, text=True, timeout=1800)
    figures = printed_figures(proc.stdout)
    if proc.returncode != 0:
        figures["error"] = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    return figures


def main(argv: list[str]) -> int:
    modules = argv or sorted(p.stem for p in HERE.glob("*_bench.py"))
    results = {}
    for module in modules:
        print(f"== {module}", flush=True)
        results[module] = run(module)
        print(json.dumps(results[module], indent=2), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    document = json.dumps({"at": stamp, "results": results}, indent=2)
    (out / f"{stamp}.json").write_text(document)
    (out / "latest.json").write_text(document)
    print(f"written bench/results/{stamp}.json", flush=True)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
