"""The image's HEALTHCHECK: `/healthz` of the service the container serves.

One image runs any of the four services or the portal (or a one-shot CLI command), so the check reads
the container's own command line (PID 1) to know which port to ask. A container that
serves nothing (`topics create`, `dlq list`) is healthy while it runs.
"""
from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from shared.settings import SERVED_NAMES, PlatformSettings


def served_service(cmdline: list[str]) -> str | None:
    """`rekisteri serve billing` → "billing" (`serve portal` → "portal"); any other command → None."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "serve" and cmdline[i + 1] in SERVED_NAMES:
            return cmdline[i + 1]
    return None


def pid1_cmdline() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check(cmdline: list[str], timeout_s: float = 3.0) -> int:
    service = served_service(cmdline)
    if service is None:
        return 0
    url = f"http://127.0.0.1:{PlatformSettings().port_of(service)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # loopback only
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {service} at {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(check(pid1_cmdline()))
