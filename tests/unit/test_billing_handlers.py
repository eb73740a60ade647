"""Billing's handlers on an in-memory unit of work (issue 21): the per-event handlers
(contact-erased, access-requested) and the bulk usage-recorded path (fold before the
transaction, apply in it), no broker or database. The same run on the real infrastructure
in tests/integration/test_billing_*.py."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

from services.billing import handlers
from services.billing.domain import Aggregation, Meter
from shared.messaging.consumer import UnitOfWork
from shared.messaging.events import AccessRequested, ContactErased, UsageRecorded
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
    b = handlers.Billing(runtime())  # type: ignore[arg-type]
    b.catalog.meters, b.catalog.customers = dict(METERS), {CUSTOMER}
    return b


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
    assert set(subscribed) == {"usage-recorded", "contact-erased", "access-requested"}
    apply, steps = subscribed["usage-recorded"]
    assert apply == b.apply_usage and steps["prepare"] == b.fold_usage


# ---- usage-recorded (P3, SPEC §6) -------------------------------------------------------------

def test_p3_fold_usage_folds_parsed_events_per_customer_meter_period_and_kept_dimensions():
    b, person = billing(), uuid.uuid4()
    folded = b.fold_usage([parsed(e, source="platform") for e in (
        usage("2", region="eu", node="a"), usage("3.5", region="eu", node="b", person=person),
        usage("1", region="us"), usage("4", at=T + timedelta(days=30), region="eu"))])
    assert {k[1:]: (a.quantity_sum, a.event_count) for k, a in folded.aggregates.items()} == {
        ("api_calls", "2026-03", '{"region":"eu"}'): (D("5.5"), 2),
        ("api_calls", "2026-03", '{"region":"us"}'): (D(1), 1),
        ("api_calls", "2026-04", '{"region":"eu"}'): (D(4), 1)}
    assert folded.persons == {(CUSTOMER, person, "api_calls", "2026-03"): [1, D("3.5")]}
    assert folded.periods == {"2026-03", "2026-04"}


async def test_p3_apply_usage_writes_the_folded_rows_and_a_second_batch_adds_to_them():
    b, store, person = billing(), BillingStore(), uuid.uuid4()
    await record(b, store, usage("2", region="eu"), usage("3", region="eu", person=person))
    await record(b, store, usage("5", at=T + timedelta(hours=1), region="eu", person=person))
    [(key, row)] = store.aggregates.items()
    assert key == (CUSTOMER, "api_calls", "2026-03", "2026-03", '{"region":"eu"}')
    assert (row["quantity_sum"], row["event_count"], row["quantity_max"]) == (D(10), 3, D(5))
    assert (row["latest_quantity"], row["latest_at"]) == (D(5), T + timedelta(hours=1))
    assert store.persons[(CUSTOMER, person, "api_calls", "2026-03")]["event_count"] == 2
    assert store.periods == {"2026-03": "open"} and store.locked == [["2026-03"], ["2026-03"]]


async def test_p3_usage_of_a_closed_period_goes_to_the_next_open_invoice():
    """SPEC §6: a late event becomes an adjustment on the next invoice not yet closed."""
    b, store = billing(), BillingStore(periods={"2026-03": "closed", "2026-04": "closed"})
    await record(b, store, usage("1", region="eu"), usage("2", at=T + timedelta(days=60), region="eu"))
    assert {(k[2], k[3]) for k in store.aggregates} == {("2026-03", "2026-05"), ("2026-05", "2026-05")}
    assert store.periods["2026-05"] == "open"


async def test_p3_a_unique_value_is_billed_where_it_was_first_seen():
    b, store = billing(), BillingStore()
    await record(b, store, usage("1", meter="active_users", user="u1"))
    store.periods["2026-03"] = "closed"
    await record(b, store, usage("1", meter="active_users", user="u1"), usage("1", meter="active_users", user="u2"))
    assert {k[4]: v for k, v in store.unique_values.items()} == {"u1": "2026-03", "u2": "2026-04"}


# ---- contact-erased (R7) -------------------------------------------------------------------------

async def test_r7_contact_erased_pseudonymises_the_persons_usage_and_confirms():
    b, store, person, command = billing(), BillingStore(), uuid.uuid4(), uuid.uuid4()
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


async def test_r7_contact_erased_without_usage_still_confirms():
    ctx = context(ContactErased(person_id=uuid.uuid4()), BillingStore(), source="contacts", service="billing")
    await billing().on_contact_erased(ctx)
    assert len(ctx.outbox.of("disposition-confirmed")) == 1  # type: ignore[union-attr]


# ---- access-requested (R12) -------------------------------------------------------------------------

async def test_r12_access_requested_answers_with_the_persons_recorded_usage():
    b, store, person, request = billing(), BillingStore(), uuid.uuid4(), uuid.uuid4()
    await record(b, store, usage("1.50", person=person, region="eu"), usage("2", person=person, region="us"),
                 usage("9", person=uuid.uuid4(), region="eu"))
    ctx = context(AccessRequested(request_id=request, person_id=person), store, source="contacts", service="billing")
    await b.on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert (part["request_id"], part["service"], part["person_id"]) == (str(request), "billing", str(person))
    assert part["items"] == [{"purpose": "usage_billing", "customer_id": str(CUSTOMER), "meter": "api_calls",
                              "period": "2026-03", "events": 2, "quantity": "3.5"}]


async def test_r12_access_requested_naming_no_person_is_answered_empty():
    """The report waits for every service, so billing answers even when it holds nothing."""
    ctx = context(AccessRequested(request_id=uuid.uuid4(), emails=["a@example.fi"]), BillingStore(),
                  source="contacts", service="billing")
    await billing().on_access_requested(ctx)
    [part] = ctx.outbox.of("access-report-part")  # type: ignore[union-attr]
    assert part["items"] == [] and part["service"] == "billing"
