"""Which stack the operator CLI talks to (issue 17).

`rekisteri up` writes its endpoints to `<data dir>/endpoints.json`; the CLI takes each of
`DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` from the environment, else from that file, and
refuses to guess: without either it does not read whatever database answers on the
default port. Every command then names the stack on stderr.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.settings import PlatformSettings

FILE_NAME = "endpoints.json"
VARIABLES = {"postgres": "DATABASE_URL", "kafka": "KAFKA_BOOTSTRAP_SERVERS"}


class StackUnknown(Exception):
    """No variable and no endpoints file: an operator's mistake (exit code 2)."""


def data_dir() -> Path:
    """The embedded stack's directory (as `rekisteri up` uses it)."""
    return Path(os.environ.get("REKISTERI_DATA_DIR", ".rekisteri")).resolve()


def write_endpoints(root: Path, settings: PlatformSettings, services: dict[str, str]) -> Path:
    """Called by `rekisteri up` once everything answers; readable by its user only."""
    path = root / FILE_NAME
    document = {
        "written_by": "rekisteri up",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pid": os.getpid(),
        VARIABLES["postgres"]: settings.database_url,
        VARIABLES["kafka"]: settings.kafka_bootstrap_servers,
        "services": services,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def read_endpoints(root: Path) -> dict[str, Any] | None:
    try:
        endpoints: dict[str, Any] = json.loads((root / FILE_NAME).read_text(encoding="utf-8"))
        return endpoints
    except (OSError, ValueError):
        return None


def postgres_address(url: str) -> str:
    """host:port/database, never the user or password."""
    parsed = urlparse(url)
    return f"{parsed.hostname or '?'}:{parsed.port or 5432}{parsed.path or ''}"


def _in_environment(variable: str) -> bool:
    return any(key.upper() == variable for key in os.environ)


@dataclass(frozen=True)
class Stack:
    settings: PlatformSettings
    sources: dict[str, str] = field(default_factory=dict)  # "postgres"/"kafka" → where it came from

    def require(self, *needs: str) -> None:
        missing = [VARIABLES[n] for n in needs if n not in self.sources]
        if missing:
            raise StackUnknown(
                f"which stack? set {' and '.join(missing)}, or start the embedded stack with `rekisteri up` "
                f"(it writes {data_dir() / FILE_NAME})")

    def where(self, need: str) -> str:
        address = (postgres_address(self.settings.database_url) if need == "postgres"
                   else self.settings.kafka_bootstrap_servers)
        return f"{address} ({self.sources.get(need, 'default')})"

    def describe(self, *needs: str) -> str:
        names = {"postgres": "PostgreSQL", "kafka": "Kafka"}
        return "stack: " + ", ".join(f"{names[n]} {self.where(n)}" for n in needs)


def resolve_stack(root: Path | None = None) -> Stack:
    """Each variable from the environment, else from `rekisteri up`'s endpoints file."""
    sources: dict[str, str] = {}
    overrides: dict[str, Any] = {}  # strings, validated into the settings' types
    file = read_endpoints(root or data_dir())
    for need, variable in VARIABLES.items():
        if _in_environment(variable):
            sources[need] = f"from {variable}"
        elif file and file.get(variable):
            overrides[variable.lower()] = file[variable]
            sources[need] = f"from {(root or data_dir()) / FILE_NAME}, written by rekisteri up at {file.get('written_at', '?')}"
    return Stack(PlatformSettings(**overrides), sources)
