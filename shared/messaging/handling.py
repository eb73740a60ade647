"""What a handler gets and what applying an event returns: the seam between the consumer
(`shared.messaging.consumer`) and each service's handlers, which a unit test fills with
in-memory fakes (issue 21)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from shared.messaging.envelope import Envelope
from shared.messaging.events import Payload
from shared.messaging.outbox import Outbox, RecordingOutbox
from shared.messaging.parsing import Parsed

P = TypeVar("P", bound=Payload)


@dataclass
class UnitOfWork:
    """What a handler changes the world through, all in one transaction: the service's store
    (its storage functions bound to the transaction, or an in-memory fake in a unit test) and
    the outbox (`shared.messaging.outbox.Outbox`, or `RecordingOutbox` in a unit test)."""

    store: Any
    outbox: Outbox | RecordingOutbox


@dataclass
class EventContext(Generic[P]):
    """What a per-event handler gets: the event, and the unit of work to apply it through."""

    envelope: Envelope
    payload: P
    service: str
    topic: str
    uow: UnitOfWork

    @property
    def store(self) -> Any:
        return self.uow.store

    @property
    def outbox(self) -> Outbox | RecordingOutbox:
        return self.uow.outbox

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id or str(self.envelope.id)


class Status(str, Enum):
    applied = "applied"
    duplicate = "duplicate"  # its (source, id) was in the inbox already: no second effect
    rejected = "rejected"    # dead-lettered with `reason`
    erased = "erased"        # its subject's data key is destroyed (issue 15): nothing to apply, no dead letter


@dataclass(frozen=True)
class EventResult:
    status: Status
    reason: str | None = None


APPLIED = EventResult(Status.applied)
DUPLICATE = EventResult(Status.duplicate)
ERASED = EventResult(Status.erased)


@dataclass
class BatchOutcome:
    """What an HTTP caller is told about its batch (SPEC §8)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, results: Sequence[EventResult]) -> BatchOutcome:
        return cls(accepted=sum(r.status in (Status.applied, Status.erased) for r in results),
                   duplicates=sum(r.status is Status.duplicate for r in results),
                   rejected=[{"index": i, "reason": r.reason} for i, r in enumerate(results)
                             if r.status is Status.rejected])


Handler = Callable[[EventContext[Any]], Awaitable[None]]
# A bulk topic's handler comes in two steps: `prepare` is pure work on the parsed events, done
# before the transaction (while the previous batch's runs); `apply` writes what it made through
# the unit of work. `apply` always gets `prepare` of exactly the events that were new to the inbox.
BatchPrepare = Callable[[list[Parsed]], Any]
BatchHandler = Callable[[UnitOfWork, Any], Awaitable[None]]
# Checks beyond the payload model (unknown meter, time in the future), a batch at a time: one
# reason per event, None for a valid one; a reason rejects its event.
BatchValidator = Callable[[list[Parsed]], Awaitable[list[str | None]]]
