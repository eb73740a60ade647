"""Contacts' handlers on an in-memory unit of work (issue 21): tests per consumed topic, no
broker or database. The handlers are the ones `handlers.register` subscribes; the same run on
the real infrastructure in tests/integration/test_contacts_*.py and test_event_order.py."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.contacts import domain, handlers
from shared.errors import Rejected
from shared.messaging.events import (
    AccessReportPart, AssignmentEnded, AssignmentStarted, ContactUpserted, DataSource, DispositionCommanded,
    OptoutRegistered, PassivationCommanded, Purpose, RelationshipEnded, RelationshipStarted,
)
from shared.messaging.outbox import RecordingOutbox
from shared.privacy.digests import SuppressionKeyring
from shared.privacy.naming import NamingDigests
from tests.unit.fakes.contacts import ContactsStore
from tests.unit.fakes.events import context

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EMAIL = "maija.meikalainen@example.fi"
PHONE = "+358401234567"
BUSINESS_ID = "0112038-9"


def _subscribed() -> dict:
    subscribed: dict = {}
    runtime = type("R", (), {"subscribe": lambda self, t, h: subscribed.__setitem__(t, h)})()
    handlers.register(runtime)  # type: ignore[arg-type]
    return subscribed


TOPIC_HANDLERS = _subscribed()


async def handle(store: ContactsStore, payload, *, source: str = "crm") -> RecordingOutbox:
    ctx = context(payload, store, source=source, service="contacts")
    await TOPIC_HANDLERS[ctx.topic](ctx)
    return ctx.outbox  # type: ignore[return-value]


def upserted(ref: str = "crm-1", **fields) -> ContactUpserted:
    return ContactUpserted(**{"external_ref": ref, "source": DataSource.b2b_register, "first_name": "Maija",
                              "last_name": "Meikäläinen", "emails": [EMAIL], **fields})


async def person(store: ContactsStore, ref: str = "crm-1", **fields) -> uuid.UUID:
    await handle(store, upserted(ref, **fields))
    found = await store.person_by_external_ref(ref)
    assert found is not None
    return found["id"]


def state(store: ContactsStore, person_id: uuid.UUID) -> str:
    return store.persons[person_id]["lifecycle_state"]


async def ended(store: ContactsStore, ref: str = "crm-1", **fields) -> uuid.UUID:
    """A person whose one relationship began and ended (R6: due for passivation)."""
    person_id, rel = await person(store, ref, **fields), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer", started_at=T0))
    await handle(store, RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=T0 + timedelta(days=9)))
    assert state(store, person_id) == "ended"
    return person_id


def test_every_consumed_topic_has_a_handler_under_test():
    assert set(TOPIC_HANDLERS) == {
        "contact-upserted", "relationship-started", "relationship-ended", "assignment-started", "assignment-ended",
        "passivation-commanded", "disposition-commanded", "optout-registered", "access-report-part"}


# ---- contact-upserted (R2, R3, R4, R8) ---------------------------------------------------------

async def test_r4_contact_upserted_registers_a_new_prospect_with_normalised_contact_points():
    store = ContactsStore()
    outbox = await handle(store, upserted(emails=["  Maija.Meikalainen@Example.FI "], phones=["040 123 4567"]))
    [(person_id, row)] = store.persons.items()
    assert row["emails"] == [EMAIL] and row["phones"] == [PHONE] and row["external_ref"] == "crm-1"
    assert row["lifecycle_state"] == "prospect" and row["legal_basis"] == "legitimate_connection"
    assert store.sources[(person_id, "emails")] == "b2b_register"
    [registered] = outbox.of("contact-registered")
    assert registered["person_id"] == str(person_id) and registered["emails"] == [EMAIL]
    assert registered["phones"] == [PHONE] and registered["lifecycle_state"] == "prospect"


async def test_r4_contact_upserted_with_a_known_external_ref_updates_and_only_adds_contact_points():
    store = ContactsStore()
    person_id = await person(store)
    outbox = await handle(store, upserted(emails=["toinen@example.fi"], title="Toimitusjohtaja",
                                          purposes=["assignments"]))
    assert list(store.persons) == [person_id]
    row = store.persons[person_id]
    assert row["emails"] == [EMAIL, "toinen@example.fi"] and row["title"] == "Toimitusjohtaja"
    assert set(row["purposes"]) == {"customer_relationship", "assignments"}
    assert outbox.of("contact-registered") == []
    [updated] = outbox.of("contact-updated")
    assert updated["cause"] == "import" and set(updated["changed_fields"]) == {"emails", "title"}


async def test_contact_upserted_again_unchanged_publishes_nothing():
    store = ContactsStore()
    await person(store)
    outbox = await handle(store, upserted())
    assert outbox.published == []


async def test_r3_contact_upserted_with_a_business_id_links_one_organisation_for_all_its_persons():
    store = ContactsStore()
    first = await person(store, "crm-1", organisation_business_id="112038-9", organisation_name="Oy Esimerkki Ab")
    second = await person(store, "crm-2", emails=["toinen@example.fi"], organisation_business_id=BUSINESS_ID)
    [org] = store.organisations.values()
    assert org["business_id"] == BUSINESS_ID and org["name"] == "Oy Esimerkki Ab"  # six digits got their zero
    assert store.persons[first]["organisation_id"] == store.persons[second]["organisation_id"] == org["id"]


@pytest.mark.parametrize("fields, reason", [
    (dict(emails=["not-an-address"]), "emails: an email address has exactly one @"),
    (dict(phones=["12"]), "phones: not"),
    (dict(organisation_business_id="1234567-2"), "organisation_business_id: the y-tunnus check digit"),
])
async def test_r3_contact_upserted_with_a_bad_contact_point_or_business_id_is_rejected_naming_the_field(
        fields, reason):
    store = ContactsStore()
    with pytest.raises(Rejected, match=reason) as caught:
        await handle(store, upserted(**fields))
    assert store.persons == {} and store.organisations == {}
    [value] = [v[0] if isinstance(v, list) else v for v in fields.values()]
    assert value not in str(caught.value)  # the rule, never the value


async def test_r8_a_new_person_with_a_banned_contact_point_is_banned_at_once():
    store = ContactsStore()
    await handle(store, OptoutRegistered(emails=[EMAIL], purposes=[Purpose.direct_advertising], source="web"),
                 source="consent")
    person_id = await person(store)
    assert await store.bans_of(person_id) == ["direct_advertising"]


async def test_r8_an_import_adding_a_banned_contact_point_bans_the_known_person():
    store = ContactsStore()
    person_id = await person(store, emails=["vanha@example.fi"])
    await handle(store, OptoutRegistered(phones=["040 123 4567"], purposes=[Purpose.distance_selling], source="web"),
                 source="consent")
    await handle(store, upserted(emails=[], phones=[PHONE]))
    assert await store.bans_of(person_id) == ["distance_selling"]


# ---- relationship-started / relationship-ended (R5, R6) -----------------------------------------

async def test_r5_relationship_started_makes_a_prospect_active():
    store = ContactsStore()
    person_id = await person(store)
    outbox = await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(),
                                                     kind="customer", started_at=T0))
    assert state(store, person_id) == "active" and await store.open_connections(person_id) == 1
    assert outbox.published == []  # a first connection is not a reactivation


async def test_r5_a_prospect_relationship_keeps_the_person_a_prospect():
    store = ContactsStore()
    person_id = await person(store)
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="prospect",
                                            started_at=T0))
    assert state(store, person_id) == "prospect"


async def test_r6_relationship_ended_ends_the_person_only_with_the_last_connection():
    store = ContactsStore()
    person_id, first, second = await person(store), uuid.uuid4(), uuid.uuid4()
    for rel in (first, second):
        await handle(store, RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer",
                                                started_at=T0))
    await handle(store, RelationshipEnded(person_id=person_id, relationship_id=first, ended_at=T0 + timedelta(days=1)))
    assert state(store, person_id) == "active"
    await handle(store, RelationshipEnded(person_id=person_id, relationship_id=second, ended_at=T0 + timedelta(days=2)))
    assert state(store, person_id) == "ended" and store.relationships[second]["ended_at"] == T0 + timedelta(days=2)


async def test_relationship_ended_before_its_start_converges_with_the_ordered_case():
    """Issue 21: the end arrives first (another topic); the start fills its facts in, and the
    person ends exactly as with the events in order."""
    in_order, reversed_ = ContactsStore(), ContactsStore()
    a, b, rel_a, rel_b = await person(in_order), await person(reversed_), uuid.uuid4(), uuid.uuid4()
    start = dict(kind="customer", started_at=T0, organisation_id=None)
    await handle(in_order, RelationshipStarted(person_id=a, relationship_id=rel_a, **start))
    await handle(in_order, RelationshipEnded(person_id=a, relationship_id=rel_a, ended_at=T0 + timedelta(days=3)))
    await handle(reversed_, RelationshipEnded(person_id=b, relationship_id=rel_b, ended_at=T0 + timedelta(days=3)))
    outbox = await handle(reversed_, RelationshipStarted(person_id=b, relationship_id=rel_b, **start))
    assert state(in_order, a) == state(reversed_, b) == "ended"
    assert outbox.of("contact-reactivated") == []
    fields = ("kind", "started_at", "ended_at")
    assert [in_order.relationships[rel_a][f] for f in fields] == [reversed_.relationships[rel_b][f] for f in fields]


async def test_relationship_ended_naming_another_persons_relationship_is_rejected():
    store = ContactsStore()
    owner, other, rel = await person(store), await person(store, "crm-2", emails=["b@example.fi"]), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=owner, relationship_id=rel, kind="customer", started_at=T0))
    with pytest.raises(Rejected, match="relationship_id: the relationship belongs to another person"):
        await handle(store, RelationshipEnded(person_id=other, relationship_id=rel, ended_at=T0))
    assert store.relationships[rel]["ended_at"] is None


async def test_relationship_event_of_an_unknown_person_is_rejected():
    with pytest.raises(Rejected, match="person_id: no such person in contacts"):
        await handle(ContactsStore(), RelationshipStarted(person_id=uuid.uuid4(), relationship_id=uuid.uuid4(),
                                                          kind="customer", started_at=T0))


async def test_r6_relationship_started_reactivates_a_passive_person_and_announces_it():
    store = ContactsStore()
    person_id = await ended(store)
    await store.set_state(person_id, domain.State.passive)
    outbox = await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(),
                                                     kind="customer", started_at=T0 + timedelta(days=30)))
    assert state(store, person_id) == "active"
    assert outbox.of("contact-reactivated") == [{"person_id": str(person_id)}]


async def test_contacts_own_relationship_events_are_not_applied_again():
    """Contacts publishes relationship events of its API changes, already applied (no loop)."""
    store = ContactsStore()
    person_id = await person(store)
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="customer",
                                            started_at=T0), source="contacts")
    assert store.relationships == {} and state(store, person_id) == "prospect"


async def test_r7_events_after_erasure_are_skipped_not_rejected():
    store = ContactsStore()
    person_id = await ended(store)
    await handle(store, DispositionCommanded(command_id=uuid.uuid4(), person_id=person_id, action="erase",
                                             basis="test"), source="retention")
    outbox = await handle(store, AssignmentStarted(person_id=person_id, assignment_id=uuid.uuid4(),
                                                   given_by="customer", started_at=T0))
    assert store.assignments == {} and store.participants == {} and outbox.published == []


# ---- assignment-started / assignment-ended (P2, R7) ----------------------------------------------

async def test_p2_assignment_started_makes_the_participant_active():
    store = ContactsStore()
    person_id, asg = await person(store), uuid.uuid4()
    await handle(store, AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="partner", started_at=T0))
    assignment = await store.get_assignment(asg)
    assert assignment["given_by"] == "partner" and assignment["status"] == "open"
    assert assignment["participants"] == [dict(person_id=person_id, started_at=T0, ended_at=None)]
    assert state(store, person_id) == "active"


async def test_p2_assignment_ended_ends_the_participation_the_assignment_and_the_person():
    store = ContactsStore()
    person_id, asg = await person(store), uuid.uuid4()
    await handle(store, AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer", started_at=T0))
    await handle(store, AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=T0 + timedelta(days=5)))
    assignment = await store.get_assignment(asg)
    assert assignment["status"] == "ended" and assignment["participants"][0]["ended_at"] == T0 + timedelta(days=5)
    assert state(store, person_id) == "ended"


async def test_assignment_ended_while_a_relationship_is_open_keeps_the_person_active():
    store = ContactsStore()
    person_id, asg = await person(store), uuid.uuid4()
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="customer",
                                            started_at=T0))
    await handle(store, AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer", started_at=T0))
    await handle(store, AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=T0 + timedelta(days=5)))
    assert state(store, person_id) == "active"


async def test_assignment_ended_before_its_start_converges_and_does_not_reactivate():
    """Issue 21: the end first records an ended participation; the start then fills in
    given_by and the start time without opening it again."""
    store = ContactsStore()
    person_id, asg = await person(store), uuid.uuid4()
    await handle(store, AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=T0 + timedelta(days=5)))
    assert state(store, person_id) == "ended"
    outbox = await handle(store, AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="principal",
                                                   started_at=T0))
    assignment = await store.get_assignment(asg)
    assert assignment["given_by"] == "principal" and assignment["started_at"] == T0
    assert assignment["participants"] == [dict(person_id=person_id, started_at=T0, ended_at=T0 + timedelta(days=5))]
    assert state(store, person_id) == "ended" and outbox.published == []


async def test_a_repeated_assignment_end_changes_nothing():
    store = ContactsStore()
    person_id, asg = await person(store), uuid.uuid4()
    await handle(store, AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer", started_at=T0))
    await handle(store, AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=T0 + timedelta(days=5)))
    await handle(store, AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=T0 + timedelta(days=8)))
    assert store.participants[(asg, person_id)]["ended_at"] == T0 + timedelta(days=5)


# ---- passivation-commanded (R6) -------------------------------------------------------------

def passivation(person_id: uuid.UUID, command_id: uuid.UUID | None = None) -> PassivationCommanded:
    return PassivationCommanded(command_id=command_id or uuid.uuid4(), person_id=person_id, basis="relationship_ended")


async def test_r6_passivation_commanded_passivates_an_ended_person_and_confirms():
    store, command = ContactsStore(), uuid.uuid4()
    person_id = await ended(store)
    outbox = await handle(store, passivation(person_id, command), source="retention")
    assert state(store, person_id) == "passive"
    assert outbox.of("contact-passivated") == [{"person_id": str(person_id), "command_id": str(command)}]
    [confirmed] = outbox.of("disposition-confirmed")
    assert (confirmed["command_id"], confirmed["service"], confirmed["action"]) == (str(command), "contacts",
                                                                                   "passivate")


async def test_r6_a_repeated_passivation_only_confirms_again():
    store = ContactsStore()
    person_id = await ended(store)
    await handle(store, passivation(person_id), source="retention")
    outbox = await handle(store, passivation(person_id), source="retention")
    assert state(store, person_id) == "passive"
    assert outbox.of("contact-passivated") == [] and len(outbox.of("disposition-confirmed")) == 1


async def test_r6_a_stale_passivation_of_a_reactivated_person_is_ignored():
    store = ContactsStore()
    person_id = await ended(store)
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="customer",
                                            started_at=T0 + timedelta(days=20)))
    outbox = await handle(store, passivation(person_id), source="retention")
    assert state(store, person_id) == "active" and outbox.published == []


async def test_passivation_of_an_erased_person_confirms_and_of_a_never_held_one_confirms_changing_nothing():
    """A refused command never completes retention's evidence and is re-sent for ever: a
    person contacts never held is confirmed, with nothing stored."""
    store = ContactsStore()
    person_id = await ended(store)
    await store.erase_person(person_id, uuid.uuid4())
    outbox = await handle(store, passivation(person_id), source="retention")
    assert [c["action"] for c in outbox.of("disposition-confirmed")] == ["passivate"]
    stranger = uuid.uuid4()
    outbox = await handle(store, passivation(stranger), source="retention")
    assert [(c["action"], c["person_id"]) for c in outbox.of("disposition-confirmed")] == [("passivate", str(stranger))]
    assert not outbox.of("contact-passivated") and stranger not in store.persons


# ---- disposition-commanded (R7, R8, R9) ------------------------------------------------------

def disposition(person_id: uuid.UUID, action: str = "erase", command_id: uuid.UUID | None = None):
    return DispositionCommanded(command_id=command_id or uuid.uuid4(), person_id=person_id, action=action,
                                basis="dispose_due")


async def test_erasure_names_the_persons_contact_points_to_the_other_services_only_as_keyed_digests():
    """Issue 15, H1: retention and billing never held the email or phone a dead letter of theirs
    may name; `contact-erased` gives them the keyed digests to find it by, never the values."""
    store, command = ContactsStore(), uuid.uuid4()
    person_id = await ended(store, phones=["040 123 4567"])
    naming = NamingDigests(SuppressionKeyring(b"k" * 32))
    outbox = RecordingOutbox("contacts", naming=naming)
    await TOPIC_HANDLERS["disposition-commanded"](
        context(disposition(person_id, "erase", command), store, source="retention", service="contacts", outbox=outbox))
    [erased] = outbox.of("contact-erased")
    assert erased["naming"] == naming.tokens((), [EMAIL], [PHONE]) and len(erased["naming"]) == 2
    assert EMAIL not in str(erased) and "401234567" not in str(erased)


async def test_r7_r8_erasure_removes_the_person_keeps_banned_contact_points_as_digests_and_confirms():
    store, command = ContactsStore(), uuid.uuid4()
    person_id = await ended(store, phones=["040 123 4567"])
    await handle(store, OptoutRegistered(person_id=person_id, purposes=[Purpose.distance_selling], source="web"),
                 source="consent")
    outbox = await handle(store, disposition(person_id, "erase", command), source="retention")
    assert person_id not in store.persons and store.relationships == {} and store.bans == set()
    assert store.erased[person_id]["command_id"] == command
    assert store.suppressed == {(d, "distance_selling") for d in store.digests([EMAIL], [PHONE])}
    assert all(EMAIL not in d and PHONE not in d for d, _ in store.suppressed)  # digests, not the values
    assert outbox.of("contact-erased") == [{"person_id": str(person_id), "command_id": str(command), "naming": []}]
    [confirmed] = outbox.of("disposition-confirmed")
    assert (confirmed["command_id"], confirmed["action"]) == (str(command), "erase")


async def test_r8_a_re_import_of_an_erased_banned_person_is_banned_again():
    store = ContactsStore()
    person_id = await ended(store)
    await handle(store, OptoutRegistered(person_id=person_id, purposes=[Purpose.direct_advertising], source="web"),
                 source="consent")
    await handle(store, disposition(person_id), source="retention")
    again = await person(store, "crm-new")
    assert again != person_id and await store.bans_of(again) == ["direct_advertising"]


async def test_r7_a_repeated_erasure_only_confirms_again():
    store = ContactsStore()
    person_id = await ended(store)
    await handle(store, disposition(person_id), source="retention")
    outbox = await handle(store, disposition(person_id), source="retention")
    assert outbox.of("contact-erased") == [] and len(outbox.of("disposition-confirmed")) == 1


async def test_r7_r9_transfer_to_marketing_keeps_only_what_marketing_needs_and_confirms():
    store, command = ContactsStore(), uuid.uuid4()
    person_id = await ended(store, title="Myyntipäällikkö")
    outbox = await handle(store, disposition(person_id, "transfer_to_marketing", command), source="retention")
    row = store.persons[person_id]
    assert row["lifecycle_state"] == "marketing" and row["external_ref"] is None
    assert row["emails"] == [EMAIL] and row["title"] == "Myyntipäällikkö" and row["legal_basis"] == "consent"
    assert store.relationships == {}
    assert outbox.of("contact-transferred-to-marketing") == [{"person_id": str(person_id),
                                                              "command_id": str(command)}]
    assert outbox.of("disposition-confirmed")[0]["action"] == "transfer_to_marketing"


async def test_r7_a_stale_disposition_of_an_active_person_changes_nothing():
    store = ContactsStore()
    person_id = await person(store)
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="customer",
                                            started_at=T0))
    outbox = await handle(store, disposition(person_id), source="retention")
    assert state(store, person_id) == "active" and store.erased == {} and outbox.published == []


async def test_art17_an_erasure_command_after_a_decided_erasure_request_erases_an_active_person():
    """Issue 14: the register owner decided `erase`; the open relationship does not make it stale.
    (Fails on the code before: the command was stale and nothing was erased.)"""
    store = ContactsStore()
    person_id = await person(store)
    await handle(store, RelationshipStarted(person_id=person_id, relationship_id=uuid.uuid4(), kind="customer",
                                            started_at=T0))
    store.erasure_decisions.add(person_id)
    outbox = await handle(store, disposition(person_id), source="retention")
    assert person_id not in store.persons and person_id in store.erased
    assert len(outbox.of("contact-erased")) == 1 and len(outbox.of("disposition-confirmed")) == 1


async def test_disposition_of_a_person_never_held_is_confirmed_and_nothing_is_erased_or_announced():
    store, stranger = ContactsStore(), uuid.uuid4()
    for action in ("erase", "transfer_to_marketing"):
        outbox = await handle(store, disposition(stranger, action), source="retention")
        assert [c["action"] for c in outbox.of("disposition-confirmed")] == [action]
        assert not outbox.of("contact-erased") and not outbox.of("contact-transferred-to-marketing")
    assert stranger not in store.persons and stranger not in store.erased


# ---- optout-registered (R8, R13) --------------------------------------------------------------

async def test_r8_r13_optout_by_contact_points_bans_every_person_holding_them_and_keeps_digests():
    store = ContactsStore()
    by_email = await person(store, "crm-1")
    by_phone = await person(store, "crm-2", emails=[], phones=[PHONE])
    bystander = await person(store, "crm-3", emails=["muu@example.fi"])
    await handle(store, OptoutRegistered(emails=[" Maija.Meikalainen@EXAMPLE.fi"], phones=["040 1234 567"],
                                         purposes=[Purpose.direct_advertising, Purpose.distance_selling],
                                         source="web"), source="consent")
    assert await store.bans_of(by_email) == await store.bans_of(by_phone) == ["direct_advertising",
                                                                               "distance_selling"]
    assert await store.bans_of(bystander) == []
    assert {d for d, _ in store.suppressed} == set(store.digests([EMAIL], [PHONE]))


async def test_r13_optout_naming_a_person_bans_that_person():
    store = ContactsStore()
    person_id = await person(store)
    await handle(store, OptoutRegistered(person_id=person_id, purposes=[Purpose.opinion_and_market_research],
                                         source="web"), source="consent")
    assert await store.bans_of(person_id) == ["opinion_and_market_research"] and store.suppressed == set()


async def test_optout_naming_an_unknown_person_records_nothing():
    store = ContactsStore()
    await handle(store, OptoutRegistered(person_id=uuid.uuid4(), purposes=[Purpose.distance_selling], source="web"),
                 source="consent")
    assert store.bans == set() and store.suppressed == set()


# ---- access-report-part (R12) ---------------------------------------------------------------------

EXPECTED = ["contacts", "billing", "consent", "retention"]


async def access_request(store: ContactsStore, person_id: uuid.UUID | None) -> uuid.UUID:
    """A collecting request with contacts' own slice stored, as `access.ask_services` leaves it."""
    request = await store.insert_access_request(dict(
        id=uuid.uuid4(), person_id=person_id, emails=[EMAIL], phones=[], contact_digests=[], channel="in_person",
        verified_by="owner", verification_notes=None, requested_by="owner", chargeable=False,
        status="collecting", expected_services=EXPECTED))
    await store.store_report_part(request["id"], "contacts", [{"field": "first_name"}])
    return request["id"]


def part(request_id: uuid.UUID, service: str, person_id=None, items=None) -> AccessReportPart:
    return AccessReportPart(request_id=request_id, service=service, person_id=person_id,
                            items=items if items is not None else [{"field": f"{service}-item"}])


async def test_r12_each_part_is_stored_and_the_last_one_fulfils_the_request():
    store = ContactsStore()
    person_id = await person(store)
    request_id = await access_request(store, person_id)
    for service in ("consent", "retention"):
        await handle(store, part(request_id, service, person_id), source=service)
    assert store.access_requests[request_id]["status"] == "collecting"
    assert store.report_parts[(request_id, "consent")] == [{"field": "consent-item"}]
    await handle(store, part(request_id, "billing", person_id), source="billing")
    request = store.access_requests[request_id]
    assert request["status"] == "fulfilled" and request["fulfilled_at"] is not None
    assert request["emails"] == []  # the contact points asked about are not kept once answered


async def test_r12_a_repeated_part_changes_nothing():
    store = ContactsStore()
    request_id = await access_request(store, None)
    await handle(store, part(request_id, "consent", items=[{"field": "first"}]), source="consent")
    await handle(store, part(request_id, "consent", items=[{"field": "second"}]), source="consent")
    assert store.report_parts[(request_id, "consent")] == [{"field": "first"}]


@pytest.mark.parametrize("service", ["marketing-tool", "contacts"])
async def test_r12_a_part_from_a_service_not_asked_is_rejected(service):
    store = ContactsStore()
    request_id = await access_request(store, None)
    with pytest.raises(Rejected, match="service: not asked to answer this access request"):
        await handle(store, part(request_id, service), source="billing")
    assert await store.answered_services(request_id) == ["contacts"]


async def test_r12_a_part_for_an_unknown_request_is_rejected():
    with pytest.raises(Rejected, match="request_id: no such access request"):
        await handle(ContactsStore(), part(uuid.uuid4(), "consent"), source="consent")


async def test_r7_r12_a_part_arriving_after_the_person_was_erased_keeps_nothing_of_them():
    store = ContactsStore()
    person_id = await ended(store)
    request_id = await access_request(store, person_id)
    await handle(store, disposition(person_id), source="retention")
    await handle(store, part(request_id, "billing", person_id), source="billing")
    assert store.report_parts[(request_id, "billing")] == [] and store.report_parts[(request_id, "contacts")] == []


# ---- portability exports (Art. 20, issue 14) ------------------------------------------------

async def test_art20_consents_portability_part_makes_the_export_ready_once():
    store = ContactsStore()
    person_id = await person(store)
    export = await store.insert_portability_export(uuid.uuid4(), person_id, "owner", ["consent"])
    first = AccessReportPart(request_id=export["id"], service="consent", person_id=person_id, purpose="portability",
                             items=[{"type": "consent_state", "value": "granted"}])
    await handle(store, first, source="consent")
    await handle(store, first.model_copy(update={"items": []}), source="consent")  # a replay changes nothing
    row = store.portability_exports[export["id"]]
    assert row["ready_at"] is not None and row["parts"] == {"consent": [{"type": "consent_state", "value": "granted"}]}
    assert store.report_parts == {}  # not taken for an access report's part


async def test_art20_a_portability_part_from_a_service_not_asked_is_rejected_and_one_without_export_dropped():
    store = ContactsStore()
    export = await store.insert_portability_export(uuid.uuid4(), uuid.uuid4(), "owner", ["consent"])
    with pytest.raises(Rejected, match="service: not asked to answer this portability export"):
        await handle(store, AccessReportPart(request_id=export["id"], service="billing", purpose="portability"),
                     source="billing")
    await handle(store, AccessReportPart(request_id=uuid.uuid4(), service="consent", purpose="portability"),
                 source="consent")  # the export went with its erased person: nothing to keep
    assert store.portability_exports[export["id"]]["parts"] == {}
