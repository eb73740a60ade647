"""Buyers, numbered invoices and their e-invoices through the API (issue 18, SPEC §6, §7)."""
from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from services.billing import finnish
from services.billing.settings import BillingSettings
from tests.helpers import ExternalSystem, envelopes, read_topic
from tests.integration.test_billing import BILLING, billing, invoice_of, new_customer, until_billed, usage  # noqa: F401
from tests.unit.test_billing_einvoice import finvoice_errors, ubl_errors

BUYER = {"name": "Asiakas Oy", "business_id": "7654321-2", "vat_number": "FI76543212",
         "address": {"street": "Asiakkaantie 5", "postal_code": "02100", "city": "Espoo"},
         "einvoice_address": "003776543212", "einvoice_operator": "E204503", "payment_terms_days": 21,
         "language": "en"}


@pytest.mark.parametrize("change, field", [
    ({"business_id": "7654321-3"}, "business_id"),                  # wrong check digit
    ({"vat_number": "FI76543213"}, "vat_number"),                   # does not match the business id
    ({"einvoice_address": "FI21 1234 5600 0007 86".replace(" ", "")}, "einvoice_address"),  # IBAN checksum
    ({"payment_terms_days": 400}, "payment_terms_days"),
])
async def test_bad_buyer_details_are_422_naming_the_field_and_nothing_is_written(billing, change, field):
    """SPEC §7: 422 with the field and the rule; no half-written customer."""
    customer = uuid.uuid4()
    response = await billing.http.put(f"/billing/customers/{customer}", json=BUYER | change, headers=BILLING)
    assert response.status_code == 422, response.text
    assert field in " ".join(response.json()["fields"]), response.json()
    assert (await billing.http.get(f"/billing/customers/{customer}", headers=BILLING)).status_code == 404


def test_a_seller_with_a_bad_iban_is_refused_at_start_up():
    seller = BillingSettings().billing_seller.model_copy(update={"iban": "FI21 1234 5600 0007 86"})
    with pytest.raises(ValidationError, match="iban: checksum does not match"):
        BillingSettings(billing_seller=seller)


async def test_an_issued_invoice_and_its_credit_note_as_finvoice_ubl_and_pdf(infra, billing):
    """Issue 18: the invoice's documents validate against the official rules, carry the
    number and reference of the gapless series, and invoice-issued points at them."""
    customer = await new_customer(billing)
    assert (await billing.http.put(f"/billing/customers/{customer}", json=BUYER, headers=BILLING)).status_code == 200
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "150", datetime(2023, 9, 12, tzinfo=UTC)))
    await until_billed(billing, customer, "2023-09", D(150))
    assert (await billing.http.post("/billing/periods/2023-09/close", headers=BILLING)).status_code == 200
    invoice = await invoice_of(billing, customer, "2023-09")
    assert finnish.reference_problem(invoice["reference"]) is None and invoice["rf_reference"].startswith("RF")
    assert invoice["buyer"]["name"] == "Asiakas Oy" and invoice["invoice_number"].isdigit()
    url = f"/billing/invoices/{invoice['invoice_id']}"
    finvoice = (await billing.http.get(url, params={"format": "finvoice"}, headers=BILLING)).text
    ubl = (await billing.http.get(url, params={"format": "ubl"}, headers=BILLING)).text
    assert finvoice_errors(finvoice) == [] and ubl_errors(ubl) == []
    assert f"<InvoiceNumber>{invoice['invoice_number']}</InvoiceNumber>" in finvoice
    assert f"<cbc:PaymentID>{invoice['rf_reference']}</cbc:PaymentID>" in ubl
    pdf = await billing.http.get(url, params={"format": "pdf"}, headers=BILLING)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"

    records = await read_topic(infra.bootstrap, "invoice-issued", until=lambda rs: any(
        e["data"]["invoice_id"] == invoice["invoice_id"] for e in envelopes(rs)))
    issued = next(e["data"] for e in envelopes(records) if e["data"]["invoice_id"] == invoice["invoice_id"])
    assert (issued["invoice_number"], issued["reference"]) == (invoice["invoice_number"], invoice["reference"])
    digests = {d["format"]: d["sha256"] for d in issued["documents"]}
    assert digests == {"finvoice": hashlib.sha256(finvoice.encode()).hexdigest(),
                       "ubl": hashlib.sha256(ubl.encode()).hexdigest()}

    note = await billing.http.post(f"{url}/credit-notes", json={"reason": "goodwill", "net": "2.50"}, headers=BILLING)
    assert note.status_code == 201, note.text
    note_url = f"/billing/invoices/{note.json()['invoice_id']}"
    note_finvoice = (await billing.http.get(note_url, params={"format": "finvoice"}, headers=BILLING)).text
    note_ubl = (await billing.http.get(note_url, params={"format": "ubl"}, headers=BILLING)).text
    assert finvoice_errors(note_finvoice) == [] and ubl_errors(note_ubl) == []
    assert "<InvoiceTypeCode>INV02</InvoiceTypeCode>" in note_finvoice and "<CreditNote " in note_ubl
    assert f"<OriginalInvoiceNumber>{invoice['invoice_number']}</OriginalInvoiceNumber>" in note_finvoice


async def test_an_invoice_without_buyer_details_is_json_only(infra, billing):
    customer = await new_customer(billing)
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "1", datetime(2023, 10, 2, tzinfo=UTC)))
    await until_billed(billing, customer, "2023-10", D(1))
    assert (await billing.http.post("/billing/periods/2023-10/close", headers=BILLING)).status_code == 200
    invoice = await invoice_of(billing, customer, "2023-10")
    refused = await billing.http.get(f"/billing/invoices/{invoice['invoice_id']}", params={"format": "ubl"},
                                     headers=BILLING)
    assert refused.status_code == 409 and "format" in refused.json()["fields"]


async def test_invoices_page_with_a_cursor_and_say_when_more_exist(billing):
    """Issues 16 and 20: GET /billing/invoices is paged (limit, cursor, next) and tells whether
    more exist; a walk that follows `next` sees every invoice once."""
    seen, cursor = [], None
    for _ in range(500):  # a walk ends: a route ignoring the cursor would repeat its first page
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await billing.http.get("/billing/invoices", params=params, headers=BILLING)).json()
        seen += [i["invoice_id"] for i in page["invoices"]]
        assert page["has_more"] == (page["next"] is not None)
        if not page["has_more"]:
            break
        cursor = page["next"]
    else:
        raise AssertionError("the walk never reached the last page")
    everything = (await billing.http.get("/billing/invoices", params={"limit": 1000}, headers=BILLING)).json()
    assert seen == [i["invoice_id"] for i in everything["invoices"]] and len(set(seen)) == len(seen)
    assert len(seen) > 2  # more than one page
    bad = await billing.http.get("/billing/invoices", params={"cursor": "not-a-cursor"}, headers=BILLING)
    assert bad.status_code == 422 and "cursor" in bad.json()["fields"]
