"""Billing's handlers on an in-memory unit of work (issue 21): the per-event handlers
(contact-erased, access-requested, payment-received) and the bulk usage-recorded path (fold
before the transaction, apply in it, fold again if plan versions changed), no broker or database. The same run on the real infrastructure
in tests/integration/test_billing_*.py."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from services.billing import handlers, numbering
from services.billing.domain import BEGINNING, Aggregation, Meter
from shared.errors import Rejected
from shared.messaging.handling import UnitOfWork
from shared.messaging.events import AccessRequested, ContactErased, PaymentReceived, UsageRecorded
from shared.messaging.outbox import RecordingOutbox
from tests.unit.fakes.billing import BillingStore
from tests.unit.fakes.events import context, parsed

T = datetime(2026, 3, 10, 12, tzinfo=UTC)  # in period 2026-03 (Helsinki)
CUSTOMER = uuid.UUID(int=7)
METERS = {"api_calls": Meter("api_calls", Aggregation.sum, ("region",)),
          "active_users": Meter("active_users", Aggregation.unique_count, (), "user")}


def runtime(subscribed: dict | None = None) -> SimpleNamespace:
    """What `Billing` and `register` read of a runtime."""
    subscribed = subscribed if subscribed is not None else {}
    settings = SimpleNamespace(billing_max_future_s=86400, billing_batch_max_records=1000, billing_auto_close=False)
    return SimpleNamespace(
        name="billing", settings=settings, pool=None,
        subscribe=lambda topic, handler: subscribed.__setitem__(topic, handler),
        subscribe_batch=lambda topic, apply, **steps: subscribed.__setitem__(topic, (apply, steps)),
        add_job=lambda name, job: None)


def billing() -> handlers.Billing:
    """Billing with its catalogue loaded: CUSTOMER has one plan version, from the start."""
    b = handlers.Billing(runtime())  # type: ignore[arg-type]
    b.catalog.meters, b.catalog.customers = dict(METERS), {CUSTOMER}
    b.catalog.versions, b.catalog.revision = {CUSTOMER: (BEGINNING,)}, 1
    return b


def billing_store(**tables) -> BillingStore:
    """A store whose committed plan versions are the ones `billing()` loaded."""
    return BillingStore(revision=1, version_starts={CUSTOMER: (BEGINNING,)}, **tables)


def buyer(contact_person_id: uuid.UUID | None = None, name: str = "Asiakas Oy") -> dict:
    return {"name": name, "business_id": "1234567-1", "payment_terms_days": 14,
            "contact_person_id": str(contact_person_id) if contact_person_id else None}


def payment(reference: str, payment_id: str = "bank-1", amount: str = "124.00", day: int = 2) -> PaymentReceived:
    return PaymentReceived(payment_id=payment_id, reference=reference, amount=D(amount), paid_on=date(2026, 4, day))


def usage(quantity: str, *, at: datetime = T, person: uuid.UUID | None = None, meter: str = "api_calls",
          **dimensions: str) -> UsageRecorded:
    return UsageRecorded(customer_id=CUSTOMER, person_id=person, meter=meter, quantity=D(quantity), time=at,
                         dimensions=dimensions)


async def record(b: handlers.Billing, store: BillingStore, *events: UsageRecorded) -> None:
    """One usage-recorded batch: folded before the transaction, applied in it."""
    folded = b.fold_usage([parsed(e, source="platform") for e in events])
    await b.apply_usage(UnitOfWork(store, RecordingOutbox("billing")), folded)


def test_every_consumed_topic_has_a_handler_under_test():
    subscribed: dict = {}
    b = handlers.register(runtime(subscribed))  # type: ignore[arg-type]
    assert set(subscribed) == {"usage-recorded", "contact-erased", "access-requested", "payment-received"}
    apply, steps = subscribed["usage-recorded"]
    assert apply == b.apply_usage and steps["prepare"] == b.fold_usage
    assert subscribed["payment-received"] == b.on_payment_received


# ---- usage-recorded (P3, SPEC §6) -------------------------------------------------------------

def test_p3_fold_usage_folds_parsed_events_per_customer_meter_period_kept_dimensions_and_version():
    b, person = billing(), uuid.uuid4()
    folded = b.fold_usage([parsed(e, source="platform") for e in (
        usage("2", region="eu", node="a"), usage("3.5", region="eu", node="b", person=person),
        usage("1", region="us"), usage("4", at=T + timedelta(days=30), region="eu"))])
    assert {k[1:]: (a.quantity_sum, a.event_count) for k, a in folded.aggregates.items()} == {
        ("api_calls", "2026-03", '{"region":"eu"}', BEGINNING): (D("5.5"), 2),
        ("api_calls", "2026-03", '{"region":"us"}', BEGINNING): (D(1), 1),
        ("api_calls", "2026-04", '{"region":"eu"}', BEGINNING): (D(4), 1)}
    assert folded.persons == {(CUSTOMER, person, "api_calls", "2026-03"): [1, D("3.5")]}
    assert folded.periods == {"2026-03", "2026-04"} and folded.revision == 1


async def test_p3_apply_usage_writes_the_folded_rows_and_a_second_batch_adds_to_them():
    b, store, person = billing(), billing_store(), uuid.uuid4()
    await record(b, store, usage("2", region="eu"), usage("3", region="eu", person=person))
    await record(b, store, usage("5", at=T + timedelta(hours=1), region="eu", person=person))
    [(key, row)] = store.aggregates.items()
    assert key == (CUSTOMER, "api_calls", "2026-03", "2026-03", '{"region":"eu"}', BEGINNING)
    assert (row["quantity_sum"], row["event_count"], row["quantity_max"]) == (D(10), 3, D(5))
    assert (row["latest_quantity"], row["latest_at"]) == (D(5), T + timedelta(hours=1))
    assert store.persons[(CUSTOMER, person, "api_calls", "2026-03")]["event_count"] == 2
    assert store.periods == {"2026-03": "open"} and store.locked == [["2026-03"], ["2026-03"]]


async def test_p3_usage_of_a_closed_period_goes_to_the_next_open_invoice():
    """SPEC §6: a late event becomes an adjustment on the next invoice not yet closed."""
    b, store = billing(), billing_store(periods={"2026-03": "closed", "2026-04": "closed"})
    await record(b, store, usage("1", region="eu"), usage("2", at=T + timedelta(days=60), region="eu"))
    assert {(k[2], k[3]) for k in store.aggregates} == {("2026-03", "2026-05"), ("2026-05", "2026-05")}
    assert store.periods["2026-05"] == "open"


async def test_p3_a_unique_value_is_billed_where_it_was_first_seen():
    b, store = billing(), billing_store()
    await record(b, store, usage("1", meter="active_users", user="u1"))
    store.periods["2026-03"] = "closed"
    await record(b, store, usage("1", meter="active_users", user="u1"), usage("1", meter="active_users", user="u2"))
    assert {k[5]: v for k, v in store.unique_values.items()} == {"u1": "2026-03", "u2": "2026-04"}


async def test_p3_a_batch_folded_before_a_plan_version_change_is_folded_again_with_the_committed_versions():
    """SPEC §6: usage is kept per plan version in force at its time; a version committed
    between the fold and the transaction must not be missed (the revision says so)."""
    b, store = billing(), billing_store()
    change = T + timedelta(hours=6)
    folded = b.fold_usage([parsed(e, source="platform") for e in (
        usage("2", region="eu"), usage("3", at=change + timedelta(hours=1), region="eu"))])
    assert {k[4] for k in folded.aggregates} == {BEGINNING}  # folded under revision 1
    store.change_plan_versions(CUSTOMER, change)  # committed by another replica: revision 2
    await b.apply_usage(UnitOfWork(store, RecordingOutbox("billing")), folded)
    assert {k[5]: row["quantity_sum"] for k, row in store.aggregates.items()} == {BEGINNING: D(2), change: D(3)}
    assert (b.catalog.revision, b.catalog.versions) == (2, {CUSTOMER: (BEGINNING, change)})
    assert b.catalog.customers == {CUSTOMER}


async def test_p3_a_batch_folded_under_the_committed_revision_is_applied_as_folded():
    b, store = billing(), billing_store()
    folded = b.fold_usage([parsed(usage("2", region="eu"), source="platform")])
    store.version_starts[CUSTOMER] = (BEGINNING, T - timedelta(days=1))  # not a committed change: same revision
    await b.apply_usage(UnitOfWork(store, RecordingOutbox("billing")), folded)
    assert [k[5] for k in store.aggregates] == [BEGINNING]
    assert b.catalog.versions == {CUSTOMER: (BEGINNING,)}


# ---- contact-erased (R7) -------------------------------------------------------------------------

async def test_r7_contact_erased_pseudonymises_the_persons_usage_and_confirms():
    b, store, person, command = billing(), billing_store(), uuid.uuid4(), uuid.uuid4()
    await record(b, store, usage("3", person=person, region="eu"), usage("4", person=uuid.uuid4(), region="eu"))
    ctx = context(ContactErased(person_id=person, command_id=command), store, source="contacts", service="billing")
    await b.on_contact_erased(ctx)
    assert await store.person_usage(person) == []
    pseudonymised = [r for r in store.persons.values() if r["pseudonymised"]]
    assert [(r["event_count"], r["quantity_sum"]) for r in pseudonymised] == [(1, D(3))]  # amounts stay
    assert sum(a["quantity_sum"] for a in store.aggregates.values()) == D(7)
    [confirmed] = ctx.outbox.of("disposition-confirmed")  # type: ignore[union-attr]
    assert (confirmed["command_id"], confirmed["person_id"], confirmed["service"], confirmed["action"]) == (
        str(command), str(person), "billing", "erase")


async def test_r7_contact_erased_pseudonymises_the_buyers_contact_person_and_keeps_the_buyer():
    """R7: a buyer's contact person reference becomes a pseudonym; the buyer's details stay."""
    b, store, person, other = billing(), billing_store(), uuid.uuid4(), uuid.uuid4()
    store.save_customer(CUSTOMER, buyer(person), person)
    store.save_customer(uuid.UUID(int=8), buyer(other, "Toinen Oy"), other)
    ctx = context(ContactErased(person_id=person), store, source="contacts", service="billing")
    await b.on_contact_erased(ctx)
    erased = store.customers[CUSTOMER]
    assert erased["contact_person_id"] not in (None, person)
    assert erased["details"]["contact_person_id"] == str(erased["contact_person_id"])
    assert erased["details"]["name"] == "Asiakas Oy" and erased["details"]["business_id"] == "1234567-1"
    assert store.customers[uuid.UUID(int=8)]["contact_person_id"] == other
    assert len(ctx.outbox.of("disposition-confirmed")) == 1  # type: ignore[union-attr]


async def test_r7_after_erasure_the_persons_payments_are_no_longer_found():
    b, store, person = billing(), billing_store(), uuid.uuid4()
    store.save_customer(CUSTOMER, buyer(person), person)
    invoice_id = store.issue_invoice(CUSTOMER, 1)
    await b.on_payment_received(context(payment(store.invoices[invoice_id]["reference"]), store, source="bank",
                                        service="billing"))
    assert len(await store.person_payments(person)) == 1
    await b.on_contact_erased(context(ContactErased(person_id=person), store, source="contacts", service="billing"))
    assert await store.person_payments(person) == []
    assert store.payments["bank-1"]["invoice_id"] == invoice_id  # the payment itself stays (bookkeeping)


async def test_contact_erased_drops_the_dead_letters_named_by_its_keyed_digests():
    """Issue 15, H1: billing never held the email its dead letter may name; it erases by the
    digests contacts sends."""
    tokens = ["0a1b2c3d:" + "e" * 64, "0a1b2c3d:" + "f" * 64]
    ctx = context(ContactErased(person_id=uuid.uuid4(), naming=tokens), billing_store(), source="contacts",
                  service="billing")
    await billing().on_contact_erased(ctx)
    assert set(tokens) <= set(ctx.outbox.erased_naming)  # type: ignore[union-attr]


async def test_r7_contact_erased_without_usage_still_confirms():
    ctx = context(ContactErased(person_id=uuid.uuid4()), billing_store(), source="contacts", service="billing")
    await billing().on_contact_erased(ctx)
    assert len(ctx.outbox.of("disposition-confirmed")) == 1  # type: ignore[union-attr]


# ---- access-requested (R12) -------------------------------------------------------------------------

async def test_r12_access_requested_answers_with_the_persons_recorded_usage():
    b, store, person, request = billing(), billing_store(), uuid.uuid4(), uuid.uuid4()
    await record(b, store, usage("1.50", person=person, region="eu"), usage("2", person=person, region="us"),
                 usage("9", person=uuid.uuid4(), region="eu"))
    ctx = context(AccessRequested(request_id=request, person_id=person), store, source="contacts", service="billing")
    await b.on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert (part["request_id"], part["service"], part["person_id"]) == (str(request), "billing", str(person))
    assert part["items"] == [{"purpose": "usage_billing", "customer_id": str(CUSTOMER), "meter": "api_calls",
                              "period": "2026-03", "events": 2, "quantity": "3.5"}]


async def test_r12_access_requested_includes_payments_on_invoices_of_buyers_the_person_is_contact_of():
    """R12 / R3 (maksutiedot): payments on the invoices of buyers whose contact person is the
    subject, oldest first; another buyer's payments and unmatched payments are not theirs."""
    b, store, person, request = billing(), billing_store(), uuid.uuid4(), uuid.uuid4()
    other_customer = uuid.UUID(int=8)
    store.save_customer(CUSTOMER, buyer(person), person)
    store.save_customer(other_customer, buyer(uuid.uuid4(), "Toinen Oy"), None)
    first, second = store.issue_invoice(CUSTOMER, 1), store.issue_invoice(CUSTOMER, 2)
    elsewhere = store.issue_invoice(other_customer, 3)
    for p in (payment(store.invoices[second]["rf_reference"], "bank-2", "50.00", day=9),
              payment(store.invoices[first]["reference"], "bank-1", "124.00", day=2),
              payment(store.invoices[elsewhere]["reference"], "bank-3", day=3),
              payment(numbering.references(99)[0], "bank-4", day=4)):  # no such invoice
        await b.on_payment_received(context(p, store, source="bank", service="billing"))
    ctx = context(AccessRequested(request_id=request, person_id=person), store, source="contacts", service="billing")
    await b.on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert part["items"] == [
        {"purpose": "payment_data", "customer_id": str(CUSTOMER), "invoice_number": "1", "payment_id": "bank-1",
         "amount": "124.00", "paid_on": "2026-04-02"},
        {"purpose": "payment_data", "customer_id": str(CUSTOMER), "invoice_number": "2", "payment_id": "bank-2",
         "amount": "50.00", "paid_on": "2026-04-09"}]


async def test_r12_access_requested_naming_no_person_is_answered_empty():
    """The report waits for every service, so billing answers even when it holds nothing."""
    ctx = context(AccessRequested(request_id=uuid.uuid4(), emails=["a@example.fi"]), billing_store(),
                  source="contacts", service="billing")
    await billing().on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert part["items"] == [] and part["service"] == "billing"


# ---- payment-received (issue 18) -------------------------------------------------------------------

async def test_payment_received_by_reference_is_recorded_against_the_invoice_of_that_reference():
    """Matched as a bank writes it: spaces and leading zeros of a national reference, and
    the RF creditor reference in any case, find the same invoice."""
    b, store = billing(), billing_store()
    store.issue_invoice(CUSTOMER, 1)
    invoice_id = store.issue_invoice(CUSTOMER, 2)
    national, rf = store.invoices[invoice_id]["reference"], store.invoices[invoice_id]["rf_reference"]
    spaced = "000 " + " ".join(national[i:i + 2] for i in range(0, len(national), 2))
    for p in (payment(spaced, "bank-1"), payment(rf.lower(), "bank-2", "10.00")):
        ctx = context(p, store, source="bank", service="billing")
        await b.on_payment_received(ctx)
        assert ctx.outbox.published == []  # type: ignore[union-attr]  # nothing to announce
    assert {k: (p["invoice_id"], p["reference"], p["amount"]) for k, p in store.payments.items()} == {
        "bank-1": (invoice_id, national, D("124.00")), "bank-2": (invoice_id, rf, D("10.00"))}


async def test_payment_received_again_under_the_same_payment_id_changes_nothing():
    b, store = billing(), billing_store()
    invoice_id = store.issue_invoice(CUSTOMER, 1)
    reference = store.invoices[invoice_id]["reference"]
    await b.on_payment_received(context(payment(reference, amount="124.00"), store, source="bank", service="billing"))
    before = {k: dict(v) for k, v in store.payments.items()}
    assert await store.apply_payment(payment(reference, amount="99.00", day=5)) is False
    await b.on_payment_received(context(payment(reference, amount="99.00", day=5), store, source="bank",
                                        service="billing"))
    assert store.payments == before


async def test_payment_received_with_an_unknown_valid_reference_is_kept_unmatched():
    b, store = billing(), billing_store()
    store.issue_invoice(CUSTOMER, 1)
    await b.on_payment_received(context(payment(numbering.references(42)[0]), store, source="bank", service="billing"))
    assert store.payments["bank-1"]["invoice_id"] is None


@pytest.mark.parametrize("reference", ["10017", "RF00 1001 6", "12a4"])
async def test_payment_received_with_a_bad_reference_is_rejected_naming_the_field(reference: str):
    """SPEC §4: an event that can never apply is dead-lettered at once (Rejected), and the
    reason names the field; nothing is recorded."""
    b, store = billing(), billing_store()
    store.issue_invoice(CUSTOMER, 1)
    with pytest.raises(Rejected) as raised:
        await b.on_payment_received(context(payment(reference), store, source="bank", service="billing"))
    assert raised.value.reason.startswith("reference: ")
    assert store.payments == {}
