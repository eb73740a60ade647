"""What every part of contacts' storage shares: the connection type, the person columns and
the row helper."""
from __future__ import annotations

from typing import Any

import asyncpg

Conn = asyncpg.Connection

PERSON_COLUMNS = ("id, first_name, last_name, title, expertise, emails, phones, other_contact, organisation_id,"
                  " legal_basis, purposes, lifecycle_state, external_ref, state_changed_at, created_at, updated_at")


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
