"""The small set of exceptions the register raises on purpose.

Each maps once to an HTTP body (SPEC §7: {"error", "message", "fields"}) in
`shared.web.http`, and `Rejected` to a dead-letter reason in `shared.messaging.consumer`. Messages
name fields and rules, never personal values.
"""
from __future__ import annotations


class RegisterError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(RegisterError):
    status = 422
    code = "validation_error"


class NotAuthenticated(RegisterError):
    status = 401
    code = "unauthenticated"


class Forbidden(RegisterError):
    status = 403
    code = "forbidden"


class NotFound(RegisterError):
    status = 404
    code = "not_found"


class Conflict(RegisterError):
    status = 409
    code = "conflict"


class Locked(RegisterError):
    status = 423
    code = "locked"


class Rejected(Exception):
    """An event that can never be applied (unknown person, broken invariant): dead-letter it
    at once instead of retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
