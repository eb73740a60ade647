"""Payments from the bank (issue 18, SPEC §6, R3 maksutiedot, R12): matched by reference,
deduplicated by payment id, invoices paid, partly paid or overpaid, receivables with ages."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal as D

from shared.messaging.events import AccessRequested, ContactErased, PaymentReceived
from tests.helpers import ExternalSystem, auth, envelope_for, envelopes, eventually, read_topic
from tests.integration.test_billing import BILLING, billing, invoice_of, new_customer, until_billed, usage  # noqa: F401
from tests.integration.test_billing_einvoices import BUYER

SERVICE = auth("service")


async def _payment_state(billing, invoice_id: str) -> dict:
    return (await billing.http.get(f"/billing/invoices/{invoice_id}", headers=BILLING)).json()["payment"]


async def _post_payment(billing, payment: PaymentReceived, event_id: uuid.UUID | None = None) -> dict:
    _, _, envelope = envelope_for(payment, source="bank", event_id=event_id)
    response = await billing.http.post("/events/payment-received", headers=SERVICE,
                                       json={"events": [json.loads(envelope.model_dump_json())]})
    assert response.status_code == 202, response.text
    return response.json()


async def test_payments_by_reference_mark_the_right_invoice_and_a_duplicate_changes_nothing(infra, billing):
    """Issue 18: two invoices; payments by national and RF reference reach the right one;
    the same payment id again (another envelope) changes nothing; paid, partly paid, overpaid;
    receivables show the open amounts; the contact person's access report has the payments."""
    person = uuid.uuid4()
    payer, other = await new_customer(billing), await new_customer(billing)
    for customer, contact in ((payer, str(person)), (other, None)):
        response = await billing.http.put(f"/billing/customers/{customer}", json=BUYER | {
            "contact_person_id": contact}, headers=BILLING)
        assert response.status_code == 200, response.text
    async with ExternalSystem(infra.bootstrap) as platform:
        for customer in (payer, other):
            await platform.publish(usage(customer, "100", datetime(2023, 11, 5, tzinfo=UTC)))
    for customer in (payer, other):
        await until_billed(billing, customer, "2023-11", D(100))
    assert (await billing.http.post("/billing/periods/2023-11/close", headers=BILLING)).status_code == 200
    invoice, untouched = await invoice_of(billing, payer, "2023-11"), await invoice_of(billing, other, "2023-11")
    gross = D(invoice["gross"])  # 100 × 0.10 = 10.00 + 24 % VAT = 12.40
    assert gross == D("12.40")

    first = PaymentReceived(payment_id=f"bank-{uuid.uuid4()}", reference=invoice["reference"], amount=D("5.00"),
                            paid_on=date(2023, 12, 10))
    assert (await _post_payment(billing, first))["accepted"] == 1
    assert (await _payment_state(billing, invoice["invoice_id"]))["status"] == "partly_paid"
    # the same payment from the bank again, in another envelope: nothing changes
    assert (await _post_payment(billing, first))["accepted"] == 1
    state = await _payment_state(billing, invoice["invoice_id"])
    assert (state["paid"], state["open"], state["status"]) == ("5.00", "7.40", "partly_paid")

    async with ExternalSystem(infra.bootstrap) as platform:  # the rest over Kafka, by RF reference
        await platform.publish(PaymentReceived(payment_id=f"bank-{uuid.uuid4()}", reference=invoice["rf_reference"],
                                               amount=D("7.40"), paid_on=date(2023, 12, 11)), source="bank")

    async def paid() -> bool:
        return (await _payment_state(billing, invoice["invoice_id"]))["status"] == "paid"
    await eventually(paid)
    await _post_payment(billing, PaymentReceived(payment_id=f"bank-{uuid.uuid4()}", reference=invoice["reference"],
                                                 amount=D("1.00"), paid_on=date(2023, 12, 12)))
    state = await _payment_state(billing, invoice["invoice_id"])
    assert (state["paid"], state["open"], state["status"]) == ("13.40", "-1.00", "overpaid")
    assert (await _payment_state(billing, untouched["invoice_id"]))["status"] == "unpaid"

    receivables = (await billing.http.get("/billing/receivables", headers=BILLING)).json()["receivables"]
    mine = {r["invoice_id"]: r for r in receivables if r["invoice_id"] in (invoice["invoice_id"], untouched["invoice_id"])}
    # issued today with 21 days' terms: open, due in 21 days
    assert (mine[untouched["invoice_id"]]["open"], mine[untouched["invoice_id"]]["days_overdue"],
            mine[untouched["invoice_id"]]["age"]) == ("12.40", -21, "not_due")
    assert mine[invoice["invoice_id"]]["open"] == "-1.00"

    async with ExternalSystem(infra.bootstrap) as platform:
        request = uuid.uuid4()
        await platform.publish(AccessRequested(request_id=request, person_id=person), source="contacts")
    parts = await read_topic(infra.bootstrap, "access-report-part", until=lambda rs: any(
        e["data"]["request_id"] == str(request) and e["data"]["service"] == "billing" for e in envelopes(rs)))
    part = next(e["data"] for e in envelopes(parts) if e["data"]["request_id"] == str(request)
                and e["data"]["service"] == "billing")
    paid_items = [i for i in part["items"] if i["purpose"] == "payment_data"]
    assert sorted(i["amount"] for i in paid_items) == ["1.00", "5.00", "7.40"]
    assert {i["invoice_number"] for i in paid_items} == {invoice["invoice_number"]}  # not the other buyer's

    # R7: on erasure the contact person reference is pseudonymised; the payments stay
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(ContactErased(person_id=person, command_id=uuid.uuid4()), source="contacts")
    pool = billing.runtime.pool

    async def pseudonymised() -> bool:
        return await pool.fetchval("SELECT count(*) FROM billing_customers WHERE contact_person_id = $1", person) == 0
    await eventually(pseudonymised)
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE invoice_id = $1",
                               uuid.UUID(invoice["invoice_id"])) == 3
    # SPEC §6: no person reference stays behind in the issued invoice's copy of its parties either
    assert await pool.fetchval("SELECT count(*) FROM invoices WHERE parties::text LIKE '%' || $1 || '%'",
                               str(person)) == 0


async def test_a_payment_with_a_bad_reference_is_rejected(billing):
    """SPEC §4: a reference failing its check digit can never be matched: rejected at once."""
    outcome = await _post_payment(billing, PaymentReceived(payment_id="bank-bad", reference="12345613",
                                                           amount=D("1.00"), paid_on=date(2024, 1, 2)))
    assert outcome["accepted"] == 0 and "reference" in json.dumps(outcome["rejected"])
