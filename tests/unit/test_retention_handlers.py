"""Retention's handlers on an in-memory unit of work (issue 21): one test per consumed topic,
no broker or database. The same handlers run on the real infrastructure in
tests/integration/test_retention_*.py."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.retention import handlers
from services.retention.access import slice_for
from services.retention.domain import DISPOSING, FrozenClock, Policy
from shared.messaging.events import (
    AccessRequested, AssignmentEnded, AssignmentStarted, Channel, ConsentGranted, ConsentWithdrawn, ContactErased,
    ContactPassivated, ContactReactivated, ContactRegistered, ContactTransferredToMarketing, DataSource,
    DispositionConfirmed, ErasureRequested, OptoutRegistered, Purpose, RelationshipEnded, RelationshipStarted,
)
from shared.messaging.handling import UnitOfWork
from shared.messaging.outbox import RecordingOutbox
from tests.unit.fakes.events import context, parsed
from tests.unit.fakes.retention import RetentionStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
RULES = handlers.Rules(Policy.validated(0, 365), FrozenClock(T0))


async def handle(store: RetentionStore, payload, *, source: str = "crm") -> RecordingOutbox:
    ctx = context(payload, store, source=source, service="retention")
    await handlers.PER_EVENT[ctx.topic](ctx, RULES)
    return ctx.outbox  # type: ignore[return-value]


async def ended_person(store: RetentionStore, *, assignment_end: datetime | None = None) -> uuid.UUID:
    person, rel = uuid.uuid4(), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=person, relationship_id=rel, kind="customer", started_at=T0))
    if assignment_end is not None:
        asg = uuid.uuid4()
        await handle(store, AssignmentStarted(person_id=person, assignment_id=asg, given_by="customer", started_at=T0))
        await handle(store, AssignmentEnded(person_id=person, assignment_id=asg, ended_at=assignment_end))
    await handle(store, RelationshipEnded(person_id=person, relationship_id=rel, ended_at=T0 + timedelta(days=10)))
    return person


async def test_contact_registered_starts_tracking_an_active_person():
    store, person = RetentionStore(), uuid.uuid4()
    await handle(store, ContactRegistered(person_id=person, source=DataSource.person_web, lifecycle_state="prospect"))
    assert store.states[person] == "active" and store.deadlines.get(person) is None


async def test_r5_relationship_started_keeps_the_person_untimed():
    store, person = RetentionStore(), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=person, relationship_id=uuid.uuid4(), kind="customer", started_at=T0))
    assert store.states[person] == "active" and store.deadlines[person] == {}


async def test_r6_relationship_ended_plans_passivation_and_disposition():
    store = RetentionStore()
    person = await ended_person(store)
    assert store.states[person] == "ended"
    assert {a: d.due_at for a, d in store.deadlines[person].items()} == {
        "passivate": T0 + timedelta(days=10), "dispose": T0 + timedelta(days=375)}


async def test_r6_assignment_started_keeps_an_ended_person_active():
    store = RetentionStore()
    person = await ended_person(store)
    await handle(store, AssignmentStarted(person_id=person, assignment_id=uuid.uuid4(), given_by="partner", started_at=T0))
    assert store.states[person] == "active" and store.deadlines[person] == {}


async def test_r7_assignment_ended_sets_the_disposition_a_year_later():
    store = RetentionStore()
    person = await ended_person(store, assignment_end=T0 + timedelta(days=5))
    assert store.deadlines[person]["dispose"].due_at == T0 + timedelta(days=370)
    assert store.deadlines[person]["dispose"].basis == "last_assignment_ended+365d"


async def test_relationship_ended_before_its_start_converges():
    store, person, rel = RetentionStore(), uuid.uuid4(), uuid.uuid4()
    await handle(store, RelationshipEnded(person_id=person, relationship_id=rel, ended_at=T0 + timedelta(days=1)))
    await handle(store, RelationshipStarted(person_id=person, relationship_id=rel, kind="customer", started_at=T0))
    assert store.states[person] == "ended" and "dispose" in store.deadlines[person]


async def test_contact_reactivated_follows_the_spans_retention_holds():
    """Reactivation announced after the new connection already ended again changes nothing;
    announced while it is open, the person is active and untimed."""
    store = RetentionStore()
    person = await ended_person(store)
    await handle(store, ContactReactivated(person_id=person), source="contacts")
    assert store.states[person] == "ended" and "dispose" in store.deadlines[person]
    await handle(store, RelationshipStarted(person_id=person, relationship_id=uuid.uuid4(), kind="customer", started_at=T0))
    await handle(store, ContactReactivated(person_id=person), source="contacts")
    assert store.states[person] == "active" and store.deadlines[person] == {}


async def test_r6_contact_passivated_makes_the_person_passive_and_keeps_only_the_disposition():
    store = RetentionStore()
    person = await ended_person(store)
    await handle(store, ContactPassivated(person_id=person, command_id=uuid.uuid4()), source="contacts")
    assert store.states[person] == "passive" and set(store.deadlines[person]) == {"dispose"}


async def test_contact_passivated_does_not_undo_a_disposition_in_progress():
    store = RetentionStore()
    person = await ended_person(store)
    store.states[person] = DISPOSING
    await handle(store, ContactPassivated(person_id=person), source="contacts")
    assert store.states[person] == DISPOSING


async def test_r7_consent_granted_records_the_permission_and_withdrawn_removes_it():
    store = RetentionStore()
    person = await ended_person(store)
    granted = dict(person_id=person, purpose=Purpose.direct_advertising, channel=Channel.email, source="web",
                   method="form", actor="person")
    await handle(store, ConsentGranted(**granted))
    assert (person, "direct_advertising", "email") in store.permissions
    await handle(store, ConsentWithdrawn(**granted))
    assert store.permissions == set()


async def test_r8_optout_registered_records_the_ban_and_drops_the_permission():
    store = RetentionStore()
    person = await ended_person(store)
    store.permissions.add((person, "distance_selling", "sms"))
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling], source="web"))
    assert (person, "distance_selling") in store.bans and store.permissions == set()


async def test_optout_by_contact_points_only_is_left_to_consent():
    store = RetentionStore()
    await handle(store, OptoutRegistered(emails=["a@example.fi"], purposes=[Purpose.distance_selling], source="web"))
    assert store.bans == set()


async def test_r9_transfer_to_marketing_stops_timing_the_person():
    store = RetentionStore()
    person = await ended_person(store)
    await handle(store, ContactTransferredToMarketing(person_id=person, command_id=uuid.uuid4()), source="contacts")
    assert store.disposed[person] == "transfer_to_marketing" and person not in store.deadlines


async def test_events_for_a_disposed_person_start_no_timers():
    store = RetentionStore()
    person = await ended_person(store)
    await store.forget_persons([person], "erase")
    await handle(store, RelationshipStarted(person_id=person, relationship_id=uuid.uuid4(), kind="customer", started_at=T0))
    assert person not in store.states and person not in store.deadlines


async def test_r7_contact_erased_forgets_the_person_and_confirms():
    store = RetentionStore()
    person, command = await ended_person(store), uuid.uuid4()
    uow = UnitOfWork(store, RecordingOutbox("retention"))
    await handlers.BULK["contact-erased"](uow, [parsed(ContactErased(person_id=person, command_id=command),
                                                       source="contacts")], RULES)
    assert store.disposed[person] == "erase" and person not in store.states
    [confirmation] = uow.outbox.of("disposition-confirmed")  # type: ignore[union-attr]
    assert confirmation["command_id"] == str(command) and confirmation["service"] == "retention"


async def test_contact_erased_drops_retentions_dead_letters_named_by_its_keyed_digests():
    """Issue 15, H1: retention never held the person's email or phone; contacts sends their digests."""
    store, tokens = RetentionStore(), ["0a1b2c3d:" + "a" * 64]
    uow = UnitOfWork(store, RecordingOutbox("retention"))
    await handlers.BULK["contact-erased"](uow, [parsed(ContactErased(person_id=uuid.uuid4(), naming=tokens),
                                                       source="contacts")], RULES)
    assert uow.outbox.erased_naming == tokens  # type: ignore[union-attr]


async def test_disposition_confirmations_complete_the_evidence_when_every_service_confirmed():
    store, person, command = RetentionStore(), uuid.uuid4(), uuid.uuid4()
    store.evidence[command] = dict(person_id=person, action="erase", commanded_at=T0, confirmations={},
                                   expected=["contacts", "consent"], completed_at=None)
    uow = UnitOfWork(store, RecordingOutbox("retention"))
    confirm = [parsed(DispositionConfirmed(command_id=None, person_id=person, service=s, action="erase",
                                           confirmed_at=T0), source=s) for s in ("contacts", "consent")]
    await handlers.BULK["disposition-confirmed"](uow, confirm[:1], RULES)
    assert store.evidence[command]["completed_at"] is None
    assert store.shredded == set()  # issue 15: the key lives until every service confirmed
    await handlers.BULK["disposition-confirmed"](uow, confirm[1:], RULES)
    assert store.evidence[command]["completed_at"] == T0
    assert store.shredded == {person}  # the erasure's last step: the person's data keys destroyed


async def test_a_completed_transfer_to_marketing_keeps_the_persons_data_key():
    store, person, command = RetentionStore(), uuid.uuid4(), uuid.uuid4()
    store.evidence[command] = dict(person_id=person, action="transfer_to_marketing", commanded_at=T0,
                                   confirmations={}, expected=["contacts"], completed_at=None)
    await handlers.BULK["disposition-confirmed"](UnitOfWork(store, RecordingOutbox("retention")), [parsed(
        DispositionConfirmed(command_id=command, person_id=person, service="contacts", action="transfer_to_marketing",
                             confirmed_at=T0), source="contacts")], RULES)
    assert store.evidence[command]["completed_at"] == T0 and store.shredded == set()


def access_requested_handler():
    """What retention subscribes to `access-requested` (shared.access), with its own slice."""
    from shared.access import answer_access_requests

    subscribed = {}
    runtime = type("R", (), {"name": "retention", "subscribe": lambda self, t, h: subscribed.__setitem__(t, h)})()
    rules = type("Rules", (), {"clock": RULES.clock, "confirmation_timeout_s": 600.0})()
    answer_access_requests(runtime, slice_for(rules))  # type: ignore[arg-type]
    return subscribed["access-requested"]


async def test_r12_access_requested_answers_with_retentions_slice():
    on_access_requested = access_requested_handler()
    store = RetentionStore()
    person = await ended_person(store)
    ctx = context(AccessRequested(request_id=uuid.uuid4(), person_id=person), store, source="contacts")
    await on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert part["service"] == "retention" and {i["field"] for i in part["items"]} == {"person", "deadlines", "timing"}
    [timing] = [i["value"] for i in part["items"] if i["field"] == "timing"]  # issue 14: the visible timing
    assert timing["disposition_due"] is not None and timing["blocked"] is False


async def test_art17_erasure_requested_makes_the_erasure_due_now_despite_an_open_relationship():
    """Issue 14: a decided erasure request overrides R5's open relationship; a later span keeps it due."""
    store, person, request = RetentionStore(), uuid.uuid4(), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=person, relationship_id=uuid.uuid4(), kind="customer", started_at=T0))
    await handle(store, ErasureRequested(person_id=person, request_id=request), source="contacts")
    [dispose] = store.deadlines[person].values()
    assert (dispose.action, dispose.due_at, dispose.basis) == ("dispose", T0, f"erasure_request {request} (Art. 17)")
    await handle(store, AssignmentStarted(person_id=person, assignment_id=uuid.uuid4(), given_by="customer", started_at=T0))
    assert store.deadlines[person]["dispose"].due_at == T0


async def test_art17_erasure_requested_for_a_person_being_disposed_of_or_gone_changes_nothing():
    store, disposing, gone = RetentionStore(), uuid.uuid4(), uuid.uuid4()
    store.states[disposing], store.disposed[gone] = DISPOSING, "erase"
    for person in (disposing, gone):
        await handle(store, ErasureRequested(person_id=person, request_id=uuid.uuid4()), source="contacts")
    assert store.erasure_requests == {} and store.deadlines == {} and store.states[disposing] == DISPOSING


async def test_art20_a_portability_export_asking_consent_alone_is_not_answered_by_retention():
    """Issue 14: `services` names who answers; retention holds nothing the person provided."""
    on_access_requested = access_requested_handler()
    store = RetentionStore()
    person = await ended_person(store)
    ctx = context(AccessRequested(request_id=uuid.uuid4(), person_id=person, purpose="portability",
                                  services=["consent"]), store, source="contacts")
    await on_access_requested(ctx)
    assert ctx.outbox.of("access-report-part") == []  # type: ignore[union-attr]
