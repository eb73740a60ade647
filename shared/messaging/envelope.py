"""The one JSON envelope every message on every topic uses (SPEC §4)."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """`id` is the idempotency key; `subject` the id of the entity whose order matters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    type: str = Field(min_length=1, max_length=100)
    source: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    subject: str = Field(min_length=1, max_length=200)
    schema_version: int = Field(default=1, ge=1)
    data: dict[str, Any]
    correlation_id: str | None = Field(default=None, max_length=200)
    # The publisher's Ed25519 signature, on command topics only (shared/messaging/signing.py).
    signature: str | None = Field(default=None, max_length=200)

    @field_validator("time")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude={"signature"} if self.signature is None else None).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.to_bytes())
        return data
