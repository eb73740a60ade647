"""Issuing invoices and credit notes in the caller's transaction (issue 18, SPEC §6):
gapless numbers, the parties as at issue, the reference number and due date, the e-invoice
documents, and the `invoice-issued` event, all committed together or not at all."""
from __future__ import annotations

import uuid
from typing import Any, Mapping, Sequence

import asyncpg

from services.billing import einvoice, numbering, storage
from shared.messaging.events import EInvoiceDocumentRef, InvoiceIssued
from shared.messaging.outbox import Outbox


def _without_person(buyer: dict[str, Any] | None) -> dict[str, Any] | None:
    """The buyer as the immutable invoice keeps it: without the register person it names, so
    an erasure (which pseudonymises `billing_customers`) leaves no person reference behind."""
    return None if buyer is None else {k: v for k, v in buyer.items() if k != "contact_person_id"}


def document_href(invoice_id: uuid.UUID, fmt: str) -> str:
    return f"/billing/invoices/{invoice_id}?format={fmt}"


async def issue(conn: asyncpg.Connection, drafts: Sequence[dict[str, Any]], settings: Any, source: str, *,
                buyers: Mapping[uuid.UUID, dict[str, Any]] | None = None,
                credits_numbers: Mapping[uuid.UUID, str] | None = None) -> None:
    """Number, complete and write `drafts` (all of one kind), in order. `buyers`: billing
    customer details by customer (invoices); credit notes keep their invoice's parties."""
    if not drafts:
        return
    kind = drafts[0]["kind"]
    seller = settings.billing_seller
    series = numbering.series_of(seller.business_id, kind, settings.billing_credit_note_series)
    prefix = settings.billing_credit_note_number_prefix if kind == "credit_note" and \
        settings.billing_credit_note_series == "own" else settings.billing_invoice_number_prefix
    first = await storage.take_numbers(conn, series, len(drafts))
    documents: list[tuple[uuid.UUID, str, str, str]] = []
    for offset, invoice in enumerate(drafts):
        number = first + offset
        invoice.update(series=series, number=number, invoice_number=numbering.number_text(prefix, number))
        if kind == "invoice":
            buyer = (buyers or {}).get(invoice["customer_id"])
            reference, rf = numbering.references(number)
            terms = buyer["payment_terms_days"] if buyer else 14
            invoice.update(reference=reference, rf_reference=rf,
                           due_date=numbering.due_date(invoice["issued_at"], terms),
                           parties={"seller": seller.model_dump(mode="json"), "buyer": _without_person(buyer)})
        rendered = einvoice.issued_documents(invoice, (credits_numbers or {}).get(invoice["invoice_id"]))
        invoice["documents"] = [EInvoiceDocumentRef(format=fmt, href=document_href(invoice["invoice_id"], fmt),
                                                    sha256=einvoice.sha256(content))
                                for fmt, content in rendered.items()]
        documents += [(invoice["invoice_id"], fmt, content, ref.sha256)
                      for (fmt, content), ref in zip(rendered.items(), invoice["documents"])]
    await storage.insert_invoices(conn, list(drafts))
    await storage.insert_documents(conn, documents)
    await Outbox(conn, source).add_all([InvoiceIssued(
        invoice_id=invoice["invoice_id"], customer_id=invoice["customer_id"], period=invoice["period"],
        kind=invoice["kind"], net=invoice["net"], vat=invoice["vat"], gross=invoice["gross"],
        issued_at=invoice["issued_at"], invoice_number=invoice["invoice_number"],
        reference=invoice.get("reference"), due_date=invoice.get("due_date"),
        documents=invoice["documents"]) for invoice in drafts])
