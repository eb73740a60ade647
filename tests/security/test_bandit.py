"""issue 16: bandit (a dev extra) finds nothing of high severity in shared/ and services/."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_reports_no_high_severity_finding():
    run = subprocess.run(  # our own interpreter, fixed arguments
        [sys.executable, "-m", "bandit", "-q", "-r", "shared", "services", "--severity-level", "high",
         "-f", "json"], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    high = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]
            if r["issue_severity"] == "HIGH"]
    assert high == []
    assert not report["errors"], report["errors"]
