"""Structured JSON logs that never carry personal data (handbook; R10).

Logs are events with ids. Two guards keep personal values out even when a caller slips:
keys that name personal fields are dropped to "[redacted]", and any string value that
looks like an email address or a phone number is masked.
"""
from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

PERSONAL_KEYS = frozenset(
    {
        "name", "first_name", "last_name", "full_name", "given_name", "family_name",
        "email", "emails", "phone", "phones", "phone_number", "address", "street",
        "username", "nickname", "password", "new_password", "old_password", "password_hash",
        "title", "expertise", "contact_details", "other_contact_details", "notes", "body",
        "token", "authorization", "contact_point", "contact_points", "value",
    }
)
REDACTED = "[redacted]"
# The local part may hold any RFC 5322 atext, the apostrophe included (o'brien@...).
_EMAIL = re.compile(r"[^\s@\"<>(),;:\[\]]+@[A-Za-z0-9.\-]+\.[A-Za-z0-9\-]{2,}")
# A phone number is written with its international "+" (or "00") or its national trunk "0"
# (Finnish numbers: 040 123 4567, (09) 123 456), then seven or more digits in all, split by
# spaces, dots or dashes. A bare number ("1048577 bytes", an offset, a count) is not one.
_PHONE = re.compile(r"(?<![\w\-+.])(?:\+|\(0|0(?![.,]))[\d \-.()]{5,}\d(?![\w-])")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def scrub_text(text: str) -> str:
    """Mask email addresses and phone-number-like digit runs; ids (UUIDs) survive."""
    masked = _EMAIL.sub("[email]", text)
    if not any(ch.isdigit() for ch in masked):
        return masked
    uuids: list[str] = []

    def keep_uuid(match: re.Match[str]) -> str:
        uuids.append(match.group(0))
        return f"\x00{len(uuids) - 1}\x00"

    masked = _UUID.sub(keep_uuid, masked)
    masked = _PHONE.sub(lambda m: "[phone]" if sum(c.isdigit() for c in m.group(0)) >= 7 else m.group(0), masked)
    return re.sub(r"\x00(\d+)\x00", lambda m: uuids[int(m.group(1))], masked)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in PERSONAL_KEYS else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the last line of defence against personal data in logs."""
    return {
        key: (REDACTED if key.lower() in PERSONAL_KEYS else _scrub(value))
        for key, value in event_dict.items()
    }


def add_correlation_id(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    cid = correlation_id_var.get()
    if cid and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on stderr (or `stream`); the stdlib loggers (uvicorn, aiokafka, faststream) too."""
    stream = stream or sys.stderr
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared_processors],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access", "kafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
