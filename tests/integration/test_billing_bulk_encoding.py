"""The bulk path's batch transaction on the real database (issue 21, SPEC §6 and §8): the inbox
keys and the usage rows travel as one JSON parameter each, so what PostgreSQL stores must be
exactly what was folded (decimals to the last digit, instants to the microsecond, person rows),
and the inbox must still tell new events from duplicates within a batch and across batches.
Its usage periods (2022-04, 2022-05) are no other test's, so no close moves their invoice period."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

from shared.messaging.handling import Status
from shared.messaging.parsing import Incoming
from tests.helpers import envelope_for
from tests.integration.test_billing import billing, new_customer, usage  # noqa: F401  # fixture

TOPIC = "usage-recorded"


def incoming(payload, *, source: str = "bulk-test", event_id: uuid.UUID | None = None) -> Incoming:
    _topic, key, envelope = envelope_for(payload, source=source, event_id=event_id)
    return Incoming(envelope.to_bytes(), key.encode())


async def test_usage_rows_keep_every_digit_and_microsecond_through_the_batch_parameter(billing):
    customer, person = await new_customer(billing), uuid.uuid4()
    early = datetime(2022, 4, 3, 4, 5, 6, 789012, tzinfo=UTC)
    late = datetime(2022, 4, 3, 4, 5, 6, 789013, tzinfo=UTC)
    events = [usage(customer, "12345678901234567890.123456789", early, person_id=person),
              usage(customer, "0.000000000000000001", late, person_id=person),
              usage(customer, "1E+3", early, dimensions={"region": "se \"quoted\", {braced}"})]
    results = await billing.runtime.consumers[TOPIC].apply([incoming(e) for e in events])
    assert [r.status for r in results] == [Status.applied] * 3

    big, tiny = D("12345678901234567890.123456789"), D("0.000000000000000001")
    folded_sum = D(0) + big + tiny  # the fold adds in Python's decimal context: this is what it wrote
    rows = await billing.runtime.pool.fetch(
        "SELECT dimensions, quantity_sum, event_count, quantity_max, latest_quantity, latest_at, invoice_period"
        " FROM usage_aggregates WHERE customer_id = $1 ORDER BY dimensions", customer)
    assert [tuple(r) for r in rows] == [
        ('{"region":"fi"}', folded_sum, 2, big, tiny, late, "2022-04"),
        ('{"region":"se \\"quoted\\", {braced}"}', D("1E+3"), 1, D("1E+3"), D("1E+3"), early, "2022-04")]
    person_row = await billing.runtime.pool.fetchrow(
        "SELECT event_count, quantity_sum FROM usage_persons WHERE customer_id = $1 AND person_id = $2",
        customer, person)
    assert tuple(person_row) == (2, big + tiny)


async def test_inbox_keeps_the_first_copy_within_a_batch_and_skips_copies_across_batches(billing):
    customer = await new_customer(billing)
    when = datetime(2022, 5, 10, 12, tzinfo=UTC)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    consumer = billing.runtime.consumers[TOPIC]

    results = await consumer.apply([incoming(usage(customer, "1", when), event_id=first),
                                    incoming(usage(customer, "2", when), event_id=second),
                                    incoming(usage(customer, "100", when), event_id=first)])  # a copy: skipped
    assert [r.status for r in results] == [Status.applied, Status.applied, Status.duplicate]
    results = await consumer.apply([incoming(usage(customer, "200", when), event_id=second),  # seen: skipped
                                    incoming(usage(customer, "4", when), event_id=third),
                                    incoming(usage(customer, "8", when), source="other-source", event_id=first)])
    assert [r.status for r in results] == [Status.duplicate, Status.applied, Status.applied]

    total = await billing.runtime.pool.fetchval(
        "SELECT sum(quantity_sum) FROM usage_aggregates WHERE customer_id = $1", customer)
    assert total == D("15")
