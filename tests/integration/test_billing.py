"""Billing on the real broker and database (issue 6, P3 of R1, SPEC §6).

Each test uses its own customers and its own past billing period (periods close for all
customers at once), so tests do not see each other's invoices.
"""
from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import asyncpg
import httpx
import pytest

from shared.messaging.events import AccessRequested, ContactErased, UsageRecorded
from shared.ops.launcher import ServiceProcess
from shared.ops.stack import free_port
from tests.helpers import ExternalSystem, auth, envelope_for, envelopes, eventually, read_topic, scaled

BILLING = auth("billing")
USAGE_GROUP = "billing.usage-recorded"  # the bulk topic's own consumer group
GRADUATED_PLAN = {"flat_fee": "0", "components": [{"meter": "bt_calls", "model": "graduated", "tiers": [
    {"up_to": "100", "unit_price": "0.10"}, {"up_to": "1000", "unit_price": "0.08"}, {"up_to": None, "unit_price": "0.05"}]}]}


@pytest.fixture
async def billing(start_service):
    return await with_meters(await start_service("billing", billing_auto_close=False))


async def with_meters(svc):
    for name, body in {"bt_calls": {"aggregation": "sum", "dimensions": ["region"]},
                       "bt_users": {"aggregation": "unique_count", "unique_dimension": "user"}}.items():
        response = await svc.http.put(f"/billing/meters/{name}", json=body, headers=BILLING)
        assert response.status_code == 200, response.text
    return svc


async def new_customer(svc, plan=GRADUATED_PLAN) -> uuid.UUID:
    customer = uuid.uuid4()
    response = await svc.http.put(f"/billing/customers/{customer}/plan", json=plan, headers=BILLING)
    assert response.status_code == 200, response.text
    return customer


def usage(customer: uuid.UUID, quantity: str, when: datetime, meter: str = "bt_calls", **kw) -> UsageRecorded:
    return UsageRecorded(customer_id=customer, meter=meter, quantity=D(quantity), time=when,
                         dimensions=kw.pop("dimensions", {"region": "fi"}), **kw)


async def billed_sum(svc, customer: uuid.UUID, period: str) -> D:
    return await svc.runtime.pool.fetchval(
        "SELECT coalesce(sum(quantity_sum), 0) FROM usage_aggregates WHERE customer_id = $1 AND period = $2",
        customer, period)


async def until_billed(svc, customer: uuid.UUID, period: str, expected: D, timeout: float = 20.0) -> None:
    async def reached() -> bool:
        return await billed_sum(svc, customer, period) == expected
    await eventually(reached, timeout=timeout)


async def invoice_of(svc, customer: uuid.UUID, period: str) -> dict:
    response = await svc.http.get("/billing/invoices", params={"customer_id": str(customer), "period": period},
                                  headers=BILLING)
    invoices = [i for i in response.json()["invoices"] if i["kind"] == "invoice"]
    assert len(invoices) == 1, invoices
    return invoices[0]


async def test_same_event_delivered_twice_bills_once(infra, billing):
    """SPEC §6: deduplicated by (source, id), forever."""
    customer = await new_customer(billing)
    when = datetime(2025, 1, 10, 12, tzinfo=UTC)
    async with ExternalSystem(infra.bootstrap) as platform:
        first = await platform.publish(usage(customer, "40", when), source="cloud-a")
        await platform.publish_envelope("usage-recorded", first)
        # same id from another source is another event
        await platform.publish(usage(customer, "2.5", when), source="cloud-b", event_id=first.id)
        await until_billed(billing, customer, "2025-01", D("42.5"))
        await platform.until_consumed(USAGE_GROUP)  # the second copy too has been read (and skipped)
    assert await billed_sum(billing, customer, "2025-01") == D("42.5")
    report = (await billing.http.get(f"/billing/customers/{customer}/usage", params={"period": "2025-01"},
                                     headers=BILLING)).json()
    assert report["usage"] == [{"meter": "bt_calls", "aggregation": "sum", "unit": "unit",
                                "dimensions": {"region": "fi"}, "quantity": "42.5", "events": 2}]


async def test_graduated_plan_across_tiers_prices_to_the_cent(infra, billing):
    """SPEC §6: 100 × 0.10 + 900 × 0.08 + 234.5 × 0.05 = 93.725 → 93.73; VAT 25.5 % once."""
    customer = await new_customer(billing)
    quantities = ["99.5", "0.75", "899.25", "200", "35"]  # 1234.5, crossing both tier boundaries
    async with ExternalSystem(infra.bootstrap) as platform:
        for i, q in enumerate(quantities):
            await platform.publish(usage(customer, q, datetime(2025, 2, 1 + i, 8, tzinfo=UTC),
                                         dimensions={"region": ["fi", "se"][i % 2]}))
    await until_billed(billing, customer, "2025-02", D("1234.5"))
    closed = await billing.http.post("/billing/periods/2025-02/close", headers=BILLING)
    assert closed.status_code == 200 and closed.json()["issued"] >= 1
    invoice = await invoice_of(billing, customer, "2025-02")
    assert invoice["lines"] == [{"kind": "usage", "meter": "bt_calls", "usage_period": "2025-02",
                                 "quantity": "1234.5", "amount": "93.73"}]
    assert (invoice["net"], invoice["vat_rate"], invoice["vat"], invoice["gross"]) == ("93.73", "25.500", "23.90", "117.63")
    records = await read_topic(infra.bootstrap, "invoice-issued", until=lambda rs: any(
        e["data"]["customer_id"] == str(customer) for e in envelopes(rs)))
    issued = [e["data"] for e in envelopes(records) if e["data"]["customer_id"] == str(customer)]
    assert [(d["period"], d["net"], d["gross"]) for d in issued] == [("2025-02", "93.73", "117.63")]
    # immutable: corrections are credit notes, never edits
    credited = await billing.http.post(f"/billing/invoices/{invoice['invoice_id']}/credit-notes",
                                       json={"reason": "goodwill", "net": "10"}, headers=BILLING)
    assert credited.status_code == 201 and credited.json()["gross"] == "-12.55"
    too_much = await billing.http.post(f"/billing/invoices/{invoice['invoice_id']}/credit-notes",
                                       json={"reason": "again", "net": "83.74"}, headers=BILLING)
    assert too_much.status_code == 409
    with pytest.raises(Exception, match="immutable"):
        await billing.runtime.pool.execute("UPDATE invoices SET net = 0 WHERE invoice_id = $1",
                                           uuid.UUID(invoice["invoice_id"]))


async def test_late_event_after_close_is_an_adjustment_on_the_next_invoice(infra, billing):
    """SPEC §6: late usage of a closed period is billed as an adjustment line next time."""
    customer = await new_customer(billing)
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "90", datetime(2025, 3, 20, tzinfo=UTC)))
        await eventually(lambda: billed_sum(billing, customer, "2025-03"))
        assert (await billing.http.post("/billing/periods/2025-03/close", headers=BILLING)).status_code == 200
        assert (await invoice_of(billing, customer, "2025-03"))["net"] == "9.00"
        # 31 March 23:30 Helsinki time is still March
        await platform.publish(usage(customer, "20", datetime(2025, 3, 31, 20, 30, tzinfo=UTC)))
        await platform.publish(usage(customer, "5", datetime(2025, 4, 2, tzinfo=UTC)))
    await until_billed(billing, customer, "2025-03", D(110))
    await eventually(lambda: billed_sum(billing, customer, "2025-04"))
    assert (await invoice_of(billing, customer, "2025-03"))["net"] == "9.00"  # the issued invoice stays
    assert (await billing.http.post("/billing/periods/2025-04/close", headers=BILLING)).status_code == 200
    lines = (await invoice_of(billing, customer, "2025-04"))["lines"]
    assert {"kind": "adjustment", "meter": "bt_calls", "usage_period": "2025-03", "quantity": "20",
            "amount": "1.80"} in lines  # price(110) − price(90) = 10.80 − 9.00
    assert {"kind": "usage", "meter": "bt_calls", "usage_period": "2025-04", "quantity": "5", "amount": "0.50"} in lines


async def test_two_concurrent_closes_issue_one_invoice(infra, billing):
    """SPEC §6: exactly one invoice per customer and period, even when close runs twice at once."""
    customer = await new_customer(billing)
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "10", datetime(2025, 5, 5, tzinfo=UTC)))
    await eventually(lambda: billed_sum(billing, customer, "2025-05"))
    first, second = await asyncio.gather(*(billing.http.post("/billing/periods/2025-05/close", headers=BILLING)
                                           for _ in range(2)))
    assert first.status_code == second.status_code == 200
    assert sorted([first.json()["issued"] == 0, second.json()["issued"] == 0]) == [False, True]
    assert await billing.runtime.pool.fetchval(
        "SELECT count(*) FROM invoices WHERE customer_id = $1 AND period = '2025-05'", customer) == 1
    assert await billing.runtime.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'invoice-issued' AND key = $1", str(customer)) == 1
    assert (await billing.http.post("/billing/periods/2099-01/close", headers=BILLING)).status_code == 409


async def test_invalid_usage_is_dead_lettered_with_its_reason(infra, billing):
    """SPEC §4: unknown meter, negative quantity, far future, unknown customer → DLQ with a reason."""
    customer = await new_customer(billing)
    now = datetime.now(UTC)
    bad = {"meter: unknown meter": usage(customer, "1", now, meter="bt_nonexistent"),
           "quantity: must not be negative": usage(customer, "-1", now),
           "time: too far in the future": usage(customer, "1", now + timedelta(days=30)),
           "customer_id: unknown customer": usage(uuid.uuid4(), "1", now),
           "dimensions.user: required": usage(customer, "1", now, meter="bt_users")}
    sent = {}
    async with ExternalSystem(infra.bootstrap) as platform:
        for reason, payload in bad.items():
            sent[reason] = (await platform.publish(payload)).to_bytes()
        _, _, non_numeric = envelope_for(usage(customer, "1", now))
        raw = json.loads(non_numeric.to_bytes())
        raw["data"]["quantity"] = "lots"
        sent["invalid data: quantity"] = json.dumps(raw).encode()
        await platform.publish_raw("usage-recorded", sent["invalid data: quantity"], key=str(customer).encode())
        await platform.publish(usage(customer, "3", datetime(2025, 7, 1, tzinfo=UTC)))
    await eventually(lambda: billed_sum(billing, customer, "2025-07"))

    async def dead_lettered() -> dict[bytes, str]:
        rows = await billing.runtime.pool.fetch(
            "SELECT original, reason FROM dead_letters WHERE original = ANY($1::bytea[])", list(sent.values()))
        return len(rows) == len(sent) and {r["original"]: r["reason"] for r in rows}
    reasons = await eventually(dead_lettered)
    for reason, original in sent.items():
        assert reasons[original].startswith(reason)
    ids = [json.loads(v)["id"] for v in sent.values()]
    assert await billing.runtime.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids) == 0


async def test_unique_count_and_csv_report(infra, billing):
    """P3: usage reports per period, meter and dimension, as JSON and CSV; role billing only."""
    customer = await new_customer(billing)
    when = datetime(2025, 8, 3, tzinfo=UTC)
    async with ExternalSystem(infra.bootstrap) as platform:
        for user in ["u1", "u2", "u1", "=cmd"]:
            await platform.publish(usage(customer, "1", when, meter="bt_users", dimensions={"user": user}))
    async def users() -> bool:
        r = await billing.http.get(f"/billing/customers/{customer}/usage", params={"period": "2025-08"}, headers=BILLING)
        return r.json()["usage"] and r.json()["usage"][0]["events"] == 4 and r.json()["usage"][0]
    assert (await eventually(users))["quantity"] == "3"
    csv = await billing.http.get(f"/billing/customers/{customer}/usage",
                                 params={"period": "2025-08", "format": "csv"}, headers=BILLING)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1] == f"{customer},2025-08,bt_users,,unique_count,unit,3,4"
    denied = await billing.http.get(f"/billing/customers/{customer}/usage", params={"period": "2025-08"},
                                    headers=auth("register_user"))
    assert denied.status_code == 403


async def test_access_report_then_erasure_pseudonymises_person_and_confirms(infra, billing):
    """R12: billing's slice of an access report; R7 + SPEC §6: on erasure person references
    are pseudonymised, amounts stay, and the erasure is confirmed."""
    customer, person = await new_customer(billing), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "7", datetime(2025, 9, 1, tzinfo=UTC), person_id=person))
        await eventually(lambda: billed_sum(billing, customer, "2025-09"))
        request = uuid.uuid4()
        await platform.publish(AccessRequested(request_id=request, person_id=person), source="contacts")
        parts = await read_topic(infra.bootstrap, "access-report-part", until=lambda rs: any(
            e["data"]["request_id"] == str(request) and e["data"]["service"] == "billing" for e in envelopes(rs)))
        part = next(e["data"] for e in envelopes(parts)
                    if e["data"]["request_id"] == str(request) and e["data"]["service"] == "billing")
        assert part["service"] == "billing" and part["items"] == [{
            "purpose": "usage_billing", "customer_id": str(customer), "meter": "bt_calls", "period": "2025-09",
            "events": 1, "quantity": "7"}]
        command = uuid.uuid4()
        await platform.publish(ContactErased(person_id=person, command_id=command), source="contacts")
    records = await read_topic(infra.bootstrap, "disposition-confirmed", until=lambda rs: any(
        e["data"]["command_id"] == str(command) and e["source"] == "billing" for e in envelopes(rs)))
    confirmed = [e["data"] for e in envelopes(records)
                 if e["data"]["command_id"] == str(command) and e["source"] == "billing"]
    assert confirmed[0]["service"] == "billing" and confirmed[0]["action"] == "erase"
    pool = billing.runtime.pool
    assert await pool.fetchval("SELECT count(*) FROM usage_persons WHERE person_id = $1", person) == 0
    row = await pool.fetchrow("SELECT quantity_sum, pseudonymised FROM usage_persons WHERE customer_id = $1", customer)
    assert row["quantity_sum"] == 7 and row["pseudonymised"]
    assert await billed_sum(billing, customer, "2025-09") == 7


async def test_ten_percent_redelivered_after_a_sigkill_mid_stream_bills_once(infra, database_url, start_service,
                                                                              tmp_path):
    """SPEC §6: a crash at any point loses nothing and counts nothing twice. Billing runs as
    its own process (`rekisteri serve billing`) and is SIGKILLed while the stream goes on: no
    graceful shutdown, its batch transactions cut wherever they are."""
    in_process = await with_meters(await start_service("billing", billing_auto_close=False))
    customer = await new_customer(in_process)
    await in_process.runtime.stop()  # the process below is the consumer group's only member
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
           "BILLING_PORT": str(port), "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
           "OUTBOX_POLL_INTERVAL_S": "0.1", "BILLING_AUTO_CLOSE": "false", "LOG_LEVEL": "WARNING",
           "BILLING_BATCH_MAX_RECORDS": "100",  # small batches, so the kill lands mid-stream
           "REKISTERI_DEV_STACK": "true"}  # the test stack runs on the development token secret
    process = ServiceProcess("billing", env, tmp_path)
    payloads = [usage(customer, f"{i % 7}.25", datetime(2025, 10, 1 + i % 28, tzinfo=UTC),
                      dimensions={"region": f"r{i % 3}"}) for i in range(3000)]
    expected = sum((p.quantity for p in payloads), D(0))
    sent = [envelope_for(p)[2].to_bytes() for p in payloads]
    key = str(customer).encode()
    process.start()
    try:
        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                if not process.alive():
                    pytest.fail(f"billing exited; see {process.log_path}")
                return False
        await eventually(ready, timeout=60, interval=0.2)
        async with ExternalSystem(infra.bootstrap) as platform:
            await platform.send_many("usage-recorded", sent[:2000], key=key)
            await eventually(lambda: billing_count(database_url, customer), interval=0.01)
            process.proc.kill()  # SIGKILL while the stream goes on
            process.proc.wait()
            partial = await billing_count(database_url, customer)
            await platform.send_many("usage-recorded", sent[2000:], key=key)
            await platform.send_many("usage-recorded", sent[::10], key=key)  # 10 % redelivered, most already applied
            restarted = await start_service("billing", fresh=True, billing_auto_close=False)
            await until_billed(restarted, customer, "2025-10", expected, timeout=60)
            await platform.until_consumed(USAGE_GROUP, timeout=60)  # the redelivered tail too
    finally:
        process.stop()
    assert await billed_sum(restarted, customer, "2025-10") == expected
    assert await restarted.runtime.pool.fetchval(
        "SELECT sum(event_count) FROM usage_aggregates WHERE customer_id = $1", customer) == 3000
    assert 0 < partial < 3000  # the kill came after some events were applied, before all were


async def billing_count(database_url: str, customer: uuid.UUID) -> int:
    """Events applied so far, read straight from the database while the service is down."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "billing"})
    try:
        return await conn.fetchval(
            "SELECT coalesce(sum(event_count), 0) FROM usage_aggregates WHERE customer_id = $1", customer)
    finally:
        await conn.close()


async def test_a_batch_that_fails_mid_pipeline_is_read_again_and_nothing_is_skipped_or_counted_twice(
        infra, start_service):
    """Two batch transactions in flight (SPEC §8): when one fails, no later batch commits its
    offsets; the consumer rewinds to the committed offset and every event bills exactly once."""
    billing = await with_meters(await start_service("billing", fresh=True, billing_auto_close=False,
                                                    billing_batch_max_records=50))
    customer = await new_customer(billing)
    consumer = billing.runtime.consumers["usage-recorded"]
    pipeline = billing.runtime.pipelines["usage-recorded"]
    real_apply, calls = consumer.apply_prepared, []
    later_batch_committed = asyncio.Event()

    async def apply_failing_once(prepared, **kwargs):
        calls.append(len(prepared.valid))
        call = len(calls)
        if call == 3:  # fails only once the batch after it has committed its transaction
            await asyncio.wait_for(later_batch_committed.wait(), timeout=scaled(30))
            raise RuntimeError("connection to the database lost mid-batch")
        outcome = await real_apply(prepared, **kwargs)
        if call > 3 and not later_batch_committed.is_set():
            later_batch_committed.set()
        return outcome

    consumer.apply_prepared = apply_failing_once
    try:
        payloads = [usage(customer, "1.5", datetime(2025, 9, 1 + i % 28, tzinfo=UTC)) for i in range(600)]
        async with ExternalSystem(infra.bootstrap) as platform:
            await platform.send_many("usage-recorded", [envelope_for(p)[2].to_bytes() for p in payloads],
                                     key=str(customer).encode())
            await until_billed(billing, customer, "2025-09", D("900.0"), timeout=60)
            await platform.until_consumed(USAGE_GROUP, timeout=60)  # anything read twice is applied or skipped
    finally:
        consumer.apply_prepared = real_apply
    assert len(calls) > 3 and later_batch_committed.is_set() and pipeline.rewinds >= 1
    assert await billing.runtime.pool.fetchval(
        "SELECT sum(event_count) FROM usage_aggregates WHERE customer_id = $1", customer) == 600
    assert await billed_sum(billing, customer, "2025-09") == D("900.0")


async def test_every_usage_csv_cell_is_escaped_against_formula_injection(infra, billing):
    """Issue 16: a cell starting with = + - @, tab or CR gets a leading apostrophe, the
    meter's unit included (it was written raw before)."""
    unit = '=HYPERLINK("http://x","y")'
    response = await billing.http.put("/billing/meters/bt_formula", json={
        "aggregation": "sum", "dimensions": ["region"], "unit": unit}, headers=BILLING)
    assert response.status_code == 200
    await billing.app.state.billing.catalog.reload(billing.runtime.pool)
    customer = await new_customer(billing)
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "2", datetime(2025, 8, 9, tzinfo=UTC), meter="bt_formula",
                                     dimensions={"region": "@sum(A1)"}))

    async def report() -> str | None:
        r = await billing.http.get(f"/billing/customers/{customer}/usage", params={"period": "2025-08", "format": "csv"},
                                   headers=BILLING)
        return r.text if len(r.text.splitlines()) > 1 else None
    lines = (await eventually(report)).splitlines()
    assert lines[1] == f"{customer},2025-08,bt_formula,region=@sum(A1),sum,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",2,1"
