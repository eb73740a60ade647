"""docs/asyncapi.json is the committed AsyncAPI document other teams read (issue 8).

It must equal what the catalogue generates; regenerate it with
`.venv/bin/rekisteri asyncapi --output docs/asyncapi.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

from shared.ops.cli import asyncapi_text
from shared.messaging.topics import CATALOGUE

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_current():
    assert DOCUMENT.exists(), "run: .venv/bin/rekisteri asyncapi --output docs/asyncapi.json"
    assert DOCUMENT.read_text(encoding="utf-8") == asyncapi_text(), (
        "docs/asyncapi.json is stale: run .venv/bin/rekisteri asyncapi --output docs/asyncapi.json")


def test_document_describes_every_topic_with_key_and_payload():
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    topics = {name for name, channel in document["channels"].items() if "x-dead-letter-of" not in channel}
    assert topics == set(CATALOGUE)
    for name, spec in CATALOGUE.items():
        channel = document["channels"][name]
        assert channel["x-key"] == spec.key
        message = document["components"]["messages"][spec.payload.__name__]
        assert message["payload"]["properties"]["type"]["const"] == name
