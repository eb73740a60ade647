"""Opaque cursors for paged lists (issue 16): the position after the last row shown."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime

from shared.errors import InvalidInput


def encode(issued_at: datetime, invoice_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{issued_at.isoformat()}|{invoice_id}".encode()).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, ident = text.partition("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError
        return at, uuid.UUID(ident)
    except ValueError:
        raise InvalidInput("next: not a cursor from a previous page", fields={"next": "not a valid cursor"}) from None
