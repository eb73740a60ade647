"""What every benchmark does around its measurement: its own embedded stack, quiet logs."""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from shared.logging import configure_logging
from shared.messaging.signing import generate_keyring
from shared.privacy.keys import DEVELOPMENT_KEYS, generate_key
from tests.infra import Infra, _start_embedded


# Every service's command-signing key for this run (SPEC §9); stand-in processes inherit it.
os.environ.setdefault("REKISTERI_SIGNING_KEYRING",
                      str(generate_keyring(Path(tempfile.mkdtemp(prefix="rekisteri-keys-")) / "keyring.json")))


def run_on_embedded_stack(name: str, measure: Callable[[Infra], Awaitable[dict[str, Any]]], *,
                          indent: int | None = None) -> dict[str, Any]:
    """Start PostgreSQL and the broker on free ports, run `measure`, print its figures as JSON."""
    configure_logging("bench", "WARNING")
    for variable in DEVELOPMENT_KEYS:  # SPEC §9: the services refuse to start without keys
        os.environ.setdefault(variable, generate_key())
    with tempfile.TemporaryDirectory(prefix=f"{name}-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the embedded PostgreSQL runs as its own user when we are root
        infra = _start_embedded(Path(tmp))
        try:
            result = asyncio.run(measure(infra))
        finally:
            infra.close()
    print(json.dumps(result, indent=indent))
    return result
