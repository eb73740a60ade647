"""A printable invoice or credit note (issue 18) in Finnish or English, with what the VAT
Act (arvonlisäverolaki 209 e §) requires on an invoice, the payment reference and the
bank's virtual barcode (also printed as a Code 128 barcode). Drawn with reportlab."""
from __future__ import annotations

import io
from decimal import Decimal
from typing import Any, Mapping

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from services.billing import einvoice, finnish

TEXT = {
    "fi": {"invoice": "LASKU", "credit_note": "HYVITYSLASKU", "number": "Laskun numero", "date": "Päivämäärä",
           "due": "Eräpäivä", "reference": "Viitenumero", "period": "Toimitusjakso", "seller": "Myyjä",
           "buyer": "Ostaja", "business_id": "Y-tunnus", "vat_number": "ALV-tunnus", "item": "Tuote / palvelu",
           "quantity": "Määrä", "unit_price": "À-hinta (alv 0 %)", "net": "Veroton", "vat": "ALV",
           "total_net": "Veroton yhteensä", "total_vat": "Arvonlisävero", "total": "Yhteensä",
           "iban": "Tilinumero (IBAN)", "bic": "BIC", "terms": "Maksuehto", "terms_text": "{days} pv netto",
           "penalty": "Viivästyskorko", "credits": "Hyvittää laskun", "to_pay": "Maksettava", "barcode":
           "Virtuaaliviivakoodi", "rf": "RF-viite", "einvoice": "Verkkolaskuosoite", "operator": "Välittäjä"},
    "en": {"invoice": "INVOICE", "credit_note": "CREDIT NOTE", "number": "Invoice number", "date": "Date",
           "due": "Due date", "reference": "Reference number", "period": "Delivery period", "seller": "Seller",
           "buyer": "Buyer", "business_id": "Business ID", "vat_number": "VAT number", "item": "Item / service",
           "quantity": "Quantity", "unit_price": "Unit price (excl. VAT)", "net": "Net", "vat": "VAT",
           "total_net": "Total excl. VAT", "total_vat": "VAT", "total": "Total",
           "iban": "Account (IBAN)", "bic": "BIC", "terms": "Payment terms", "terms_text": "{days} days net",
           "penalty": "Penalty interest", "credits": "Credits invoice", "to_pay": "Amount due", "barcode":
           "Virtual barcode", "rf": "RF reference", "einvoice": "E-invoice address", "operator": "Operator"},
}


def _eur(amount: Decimal, language: str) -> str:
    text = f"{amount:,.2f}"
    return (text.replace(",", " ").replace(".", ",") if language == "fi" else text) + " €"


def _date(day: Any, language: str) -> str:
    return day.strftime("%d.%m.%Y") if language == "fi" else day.isoformat()


def render(invoice: Mapping[str, Any], language: str, credits_number: str | None = None) -> bytes:
    """The PDF of a stored invoice row (its parties snapshotted at issue): the heading, the
    parties, the lines and totals, and the payment slip with its virtual barcode."""
    doc = einvoice.document_of(invoice, credits_number)
    doc = doc.__class__(**{**doc.__dict__, "language": language,
                           "lines": [einvoice.Line(einvoice.line_text(line, language),
                                                   Decimal(line.get("quantity", "1")), "C62", Decimal(line["amount"]))
                                     for line in invoice["lines"]]})
    out = io.BytesIO()
    page = _Page(canvas.Canvas(out, pagesize=A4, pageCompression=1), TEXT[language], language)
    page.canvas.setTitle(f"{page.t[doc.kind]} {doc.number}")
    y = min(_heading(page, doc), _parties(page, doc)) - 6 * mm
    _lines_and_totals(page, doc, y)
    _payment_slip(page, doc)
    page.canvas.showPage()
    page.canvas.save()
    return out.getvalue()


class _Page:
    def __init__(self, c: canvas.Canvas, t: Mapping[str, str], language: str) -> None:
        self.canvas, self.t, self.language = c, t, language
        self.width, self.height = A4

    def text(self, x: float, y: float, value: str, size: int = 9, bold: bool = False) -> None:
        self.canvas.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        self.canvas.drawString(x, y, value)


def _heading(page: _Page, doc: einvoice.Document) -> float:
    """The seller's name, the document's kind and its facts on the right; returns where it ends."""
    t, language, y = page.t, page.language, page.height - 20 * mm
    page.text(20 * mm, y, doc.seller["name"], 12, True)
    page.text(130 * mm, y, t[doc.kind], 14, True)
    y -= 6 * mm
    for label, value in [("number", doc.number), ("date", _date(doc.issued, language)),
                         *([("due", _date(doc.due, language))] if doc.due else []),
                         *([("reference", finnish.grouped(doc.reference))] if doc.reference else []),
                         ("period", f"{_date(doc.period_start, language)} – {_date(doc.period_end, language)}"),
                         *([("credits", doc.credits_number)] if doc.credits_number else [])]:
        page.text(130 * mm, y, f"{t[label]}:", 8)
        page.text(165 * mm, y, value, 8, label in ("due", "reference"))
        y -= 4.5 * mm
    return y


def _parties(page: _Page, doc: einvoice.Document) -> float:
    t, y0 = page.t, page.height - 30 * mm
    for label, party in (("seller", doc.seller), ("buyer", doc.buyer)):
        page.text(20 * mm, y0, t[label], 8, True)
        a = party["address"]
        rows = [party["name"], a["street"], f"{a['postal_code']} {a['city']}",
                f"{t['business_id']}: {party['business_id']}"]
        if party.get("vat_number"):
            rows.append(f"{t['vat_number']}: {party['vat_number']}")
        if party.get("einvoice_address"):
            rows.append(f"{t['einvoice']}: {party['einvoice_address']} ({t['operator']} {party['einvoice_operator']})")
        for i, row in enumerate(rows):
            page.text(20 * mm, y0 - (i + 1) * 4.2 * mm, row, 8)
        y0 -= (len(rows) + 2) * 4.2 * mm
    return y0


def _lines_and_totals(page: _Page, doc: einvoice.Document, y: float) -> None:
    t, language = page.t, page.language
    for x, label in [(20, "item"), (112, "quantity"), (132, "unit_price"), (162, "vat"), (178, "net")]:
        page.text(x * mm, y, t[label], 7, True)
    y -= 5 * mm
    rate = f"{einvoice.domain.quantity_text(doc.vat_rate)} %"
    for line in doc.lines:
        if y < 70 * mm:  # above the payment slip, or on a new page
            page.canvas.showPage()
            y = page.height - 20 * mm
        unit = line.amount / line.quantity if line.quantity else line.amount
        page.text(20 * mm, y, line.text[:60], 8)
        page.text(112 * mm, y, einvoice.domain.quantity_text(line.quantity), 8)
        page.text(132 * mm, y, f"{unit:.6f}".rstrip("0").rstrip(".").replace(".", "," if language == "fi" else "."), 8)
        page.text(162 * mm, y, rate, 8)
        page.text(178 * mm, y, _eur(line.amount, language), 8)
        y -= 4.5 * mm
    y -= 3 * mm
    for label, amount in (("total_net", doc.net), ("total_vat", doc.vat), ("total", doc.gross)):
        page.text(132 * mm, y, f"{t[label]}{f' {rate}' if label == 'total_vat' else ''}", 9, label == "total")
        page.text(178 * mm, y, _eur(amount, language), 9, label == "total")
        y -= 5 * mm


def _payment_slip(page: _Page, doc: einvoice.Document) -> None:
    """The bottom of the last page: account, terms, reference and the virtual barcode."""
    t, language, s, y = page.t, page.language, doc.seller, 60 * mm
    page.canvas.line(20 * mm, y + 6 * mm, page.width - 20 * mm, y + 6 * mm)
    rows = [(t["iban"], s["iban"]), (t["bic"], s["bic"])]
    if doc.kind == "invoice" and doc.due:
        rows += [(t["terms"], t["terms_text"].format(days=(doc.due - doc.issued).days)),
                 (t["penalty"], f"{s.get('penalty_interest', '11.5')} %"), (t["due"], _date(doc.due, language)),
                 (t["to_pay"], _eur(doc.gross, language))]
        if doc.reference:
            rows += [(t["reference"], finnish.grouped(doc.reference)), (t["rf"], doc.rf_reference or "")]
    for i, (label, value) in enumerate(rows):
        page.text(20 * mm + (i % 2) * 85 * mm, y - (i // 2) * 5 * mm, f"{label}: {value}", 8)
    if doc.kind == "invoice" and doc.reference and doc.gross > 0:
        code = finnish.virtual_barcode(s["iban"], doc.gross, doc.reference, doc.due)
        page.text(20 * mm, 25 * mm, f"{t['barcode']}: {code}", 7)
        Code128(code, barHeight=10 * mm, barWidth=0.25 * mm, quiet=False).drawOn(page.canvas, 20 * mm, 12 * mm)


def virtual_barcode_of(invoice: Mapping[str, Any]) -> str | None:
    """The virtual barcode printed on an invoice (None for credit notes and nothing to pay)."""
    if invoice["kind"] != "invoice" or not invoice.get("reference") or Decimal(invoice["gross"]) <= 0:
        return None
    return finnish.virtual_barcode(invoice["parties"]["seller"]["iban"], Decimal(invoice["gross"]),
                                   invoice["reference"], invoice.get("due_date"))
