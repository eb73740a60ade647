"""Building the context a handler gets, with an in-memory unit of work (issue 21)."""
from __future__ import annotations

import uuid
from typing import Any

from shared.messaging.handling import EventContext, UnitOfWork
from shared.messaging.parsing import Incoming, Parsed
from shared.messaging.events import Payload
from shared.messaging.outbox import RecordingOutbox, build_envelope


def context(payload: Payload, store: Any, *, source: str = "crm", service: str = "test",
            outbox: RecordingOutbox | None = None) -> EventContext:
    topic, _, envelope = build_envelope(payload, source=source)
    return EventContext(envelope, payload, service, topic, UnitOfWork(store, outbox or RecordingOutbox(service)))


def parsed(payload: Payload, *, source: str = "crm") -> Parsed:
    _, _, envelope = build_envelope(payload, source=source)
    return Parsed(Incoming(envelope.to_bytes()), envelope, payload)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
