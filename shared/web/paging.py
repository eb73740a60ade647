"""Cursor paging for every list route (issues 16 and 20): `limit` (capped), an opaque `cursor`
that is the position after the last row shown, and `next` in the answer (null on the last page).

A cursor encodes the sort key of the last row (e.g. its time and id); the next page is the
rows strictly after it in the same order, so a walk with `next` sees every row exactly once
even while rows are added before the position already passed. The client never parses it.
"""
from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Sequence

from fastapi import Query
from pydantic import Field

from shared.errors import InvalidInput

CURSOR_MAX_CHARS = 400


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("no offset")
    return moment


PARSERS: dict[type, Callable[[str], Any]] = {datetime: _parse_time, date: date.fromisoformat, uuid.UUID: uuid.UUID,
                                             int: int, str: str}


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def encode_cursor(*key: Any) -> str:
    """The cursor after a row whose sort key is `key` (datetimes, dates, uuids, ints, strings)."""
    return base64.urlsafe_b64encode(json.dumps([_text(v) for v in key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type, field: str = "cursor") -> tuple[Any, ...] | None:
    """The sort key a cursor encodes, typed as `types`; None for the first page; 422 for a
    cursor that no page of this list gave out (SPEC §7)."""
    if cursor is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        if not isinstance(parts, list) or len(parts) != len(types):
            raise ValueError("wrong shape")
        return tuple(PARSERS[t](p) for t, p in zip(types, parts))
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{field}: not a cursor from a previous page of this list",
                           fields={field: "not a valid cursor"}) from None


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None

    def after(self, *types: type) -> tuple[Any, ...] | None:
        return decode_cursor(self.cursor, *types)


def page_query(default: int = 100, maximum: int = 1000) -> Callable[..., PageRequest]:
    """A FastAPI dependency for `limit` (1..maximum) and `cursor`."""

    def dependency(limit: int = Query(default, ge=1, le=maximum, description=f"Rows a page, at most {maximum}"),
                   cursor: str | None = Query(None, max_length=CURSOR_MAX_CHARS,
                                              description="`next` of the previous page; absent for the first")
                   ) -> PageRequest:
        return PageRequest(limit, cursor)

    return dependency


def page(rows: Sequence[Any], limit: int, key: Callable[[Any], tuple[Any, ...]]) -> tuple[list[Any], str | None]:
    """Rows of a page fetched with `limit + 1`, and `next` (None when there are no more)."""
    shown = list(rows[:limit])
    return shown, encode_cursor(*key(shown[-1])) if len(rows) > limit and shown else None


NEXT_DESCRIPTION = "The `cursor` for the next page; null on the last page (no more rows)"


def next_field() -> Any:
    """The `next` of a page's answer model: required, null on the last page."""
    return Field(..., description=NEXT_DESCRIPTION, examples=[None])
