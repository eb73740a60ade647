"""Consent's handlers on an in-memory unit of work (issue 21): one test per consumed topic.
The same handlers run on the real broker and database in tests/integration/test_consent_*.py."""
from __future__ import annotations

import uuid

import pytest

from services.consent import access, handlers
from shared.privacy import SuppressionChains, SuppressionKeyring
from shared.errors import Rejected
from shared.messaging.events import (
    AccessRequested, Channel, ContactErased, ContactPassivated, ContactReactivated, ContactRegistered,
    ContactTransferredToMarketing, ContactUpdated, DataSource, OptoutRegistered, Purpose, SubjectTokensRevoked,
)
from tests.unit.fakes.consent import ConsentStore
from tests.unit.fakes.events import context

HASHER = SuppressionChains(SuppressionKeyring(b"unit-test-suppression-key-32-bytes"))
EMAIL = "maija.meikalainen@example.fi"


async def handle(store: ConsentStore, payload, *, source: str = "crm"):
    ctx = context(payload, store, source=source, service="consent")
    topic_handlers = {
        "optout-registered": lambda c: handlers.on_optout_registered(c, HASHER),
        "contact-registered": lambda c: handlers.on_contact_registered(c, HASHER),
        "contact-updated": lambda c: handlers.on_contact_updated(c, HASHER),
        "contact-erased": handlers.on_contact_erased,
        "contact-transferred-to-marketing": handlers.on_contact_transferred_to_marketing,
        "contact-passivated": handlers.on_contact_passivated,
        "contact-reactivated": handlers.on_contact_reactivated,
        "subject-tokens-revoked": handlers.on_subject_tokens_revoked,
    }
    await topic_handlers[ctx.topic](ctx)
    return ctx.outbox


def registered(person_id: uuid.UUID, email: str = EMAIL) -> ContactRegistered:
    return ContactRegistered(person_id=person_id, emails=[email], source=DataSource.person_web, lifecycle_state="prospect")


async def test_r13_optout_registered_bans_the_person_for_each_channel():
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, registered(person), source="contacts")
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling],
                                         channels=[Channel.sms], source="web"))
    assert store.states[(person, "distance_selling", "sms")] == "banned"


async def test_r8_optout_by_contact_point_alone_keeps_only_its_keyed_hash():
    store = ConsentStore()
    await handle(store, OptoutRegistered(emails=[EMAIL], purposes=[Purpose.direct_advertising],
                                         channels=[Channel.email], source="web"))
    assert {(pu, ch) for _, pu, ch in store.suppressed} == {("direct_advertising", "email")}
    assert all(EMAIL.encode() not in d for d, _, _ in store.suppressed)


async def test_optout_without_person_or_contact_points_is_rejected():
    with pytest.raises(Rejected, match="person_id, emails or phones"):
        await handle(ConsentStore(), OptoutRegistered(purposes=[Purpose.distance_selling], source="web"))


async def test_consents_own_optout_announcement_is_not_applied_twice():
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling], source="web"),
                 source="consent")
    assert store.states == {}


async def test_r4_r8_a_registered_person_with_a_suppressed_address_is_banned_and_announced():
    store = ConsentStore()
    await handle(store, OptoutRegistered(emails=[EMAIL], purposes=[Purpose.direct_advertising],
                                         channels=[Channel.email], source="web"))
    person = uuid.uuid4()
    outbox = await handle(store, registered(person), source="contacts")
    assert store.states[(person, "direct_advertising", "email")] == "banned"
    [announced] = outbox.of("optout-registered")
    assert announced["person_id"] == str(person) and announced["purposes"] == ["direct_advertising"]


async def test_contact_updated_with_a_suppressed_address_bans_the_person():
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, registered(person, "old@example.fi"), source="contacts")
    await handle(store, OptoutRegistered(emails=[EMAIL], purposes=[Purpose.distance_selling],
                                         channels=[Channel.phone], source="web"))
    await handle(store, ContactUpdated(person_id=person, changed_fields=["emails"], cause="update",
                                       emails=["old@example.fi", EMAIL]), source="contacts")
    assert store.states[(person, "distance_selling", "phone")] == "banned"


async def test_r7_r8_contact_erased_keeps_only_the_suppression_list_and_confirms():
    store, person, command = ConsentStore(), uuid.uuid4(), uuid.uuid4()
    await handle(store, registered(person), source="contacts")
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling], source="web"))
    outbox = await handle(store, ContactErased(person_id=person, command_id=command), source="contacts")
    assert store.states == {} and person in store.erased and store.suppressed
    assert outbox.erased_copies == [(person, ())]  # its own outbox copies and dead letters go too
    [confirmed] = outbox.of("disposition-confirmed")
    assert confirmed["command_id"] == str(command) and confirmed["action"] == "erase"


async def test_r7_transfer_to_marketing_adds_to_the_marketing_register_and_confirms():
    store, person = ConsentStore(), uuid.uuid4()
    outbox = await handle(store, ContactTransferredToMarketing(person_id=person, command_id=uuid.uuid4()),
                          source="contacts")
    assert person in store.marketing
    assert outbox.of("disposition-confirmed")[0]["action"] == "transfer_to_marketing"


async def test_r6_passivation_and_reactivation_follow_contacts():
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, ContactPassivated(person_id=person), source="contacts")
    assert person in store.passive
    await handle(store, ContactReactivated(person_id=person), source="contacts")
    assert person not in store.passive


async def test_r12_access_slice_lists_states_and_suppression_records_found_by_contact_point():
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, registered(person), source="contacts")
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling],
                                         channels=[Channel.sms], source="web"))
    items = await access.slice_for(HASHER)(store, AccessRequested(request_id=uuid.uuid4(), person_id=person,
                                                                   emails=[EMAIL]))
    assert {i["category"] for i in items} == {"consent_state", "suppression_record"}


async def test_art20_portability_slice_holds_only_the_permissions_and_bans_in_force():
    """Issue 14: a portability export asks consent for what the person gave, not its history or
    the suppression records found by contact point."""
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, registered(person), source="contacts")
    await handle(store, OptoutRegistered(person_id=person, purposes=[Purpose.distance_selling],
                                         channels=[Channel.sms], source="web"))
    items = await access.slice_for(HASHER)(store, AccessRequested(request_id=uuid.uuid4(), person_id=person,
                                                                   emails=[EMAIL], purpose="portability"))
    assert items and {(i["category"], i["value"]) for i in items} == {("consent_state", "banned")}


async def test_revoked_subject_tokens_only_tighten_whatever_the_order_of_announcements():
    """Issue 16: consent refuses what contacts revoked; a late, older announcement (version 2
    after 3) never lowers the floor, and a disable stays."""
    store, person = ConsentStore(), uuid.uuid4()
    await handle(store, SubjectTokensRevoked(person_id=person, token_version=3), source="contacts")
    await handle(store, SubjectTokensRevoked(person_id=person, token_version=2, disabled=True), source="contacts")
    await handle(store, SubjectTokensRevoked(person_id=person, token_version=1), source="contacts")
    assert store.token_floors[person] == (3, True)
