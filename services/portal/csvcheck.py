"""The marketing team's consent check of a campaign list (R8, R13): a CSV of emails and
phones in, the same list answered as CSV out. Pure functions; consent decides."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

MAX_BYTES = 10 * 1024 * 1024
EMAIL_HEADERS = {"email", "e-mail", "sähköposti", "sahkoposti", "emails"}
PHONE_HEADERS = {"phone", "puhelin", "puhelinnumero", "mobile", "matkapuhelin", "phones"}


class CsvProblem(ValueError):
    """The upload is not a CSV we can read; `key` names the message (translated)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Entry:
    line: int
    kind: str  # "email" | "phone"
    value: str


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CsvProblem("marketing.csv_encoding")


def parse_contact_points(data: bytes) -> list[Entry]:
    """Emails and phones of a CSV, in file order. With a header row, its email/phone columns;
    without one, every cell that looks like an email ('@') or a phone (mostly digits)."""
    if not data.strip():
        raise CsvProblem("marketing.csv_empty")
    if len(data) > MAX_BYTES:
        raise CsvProblem("marketing.csv_too_large")
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    columns = {i: "email" for i, h in enumerate(header) if h in EMAIL_HEADERS}
    columns |= {i: "phone" for i, h in enumerate(header) if h in PHONE_HEADERS}
    entries: list[Entry] = []
    body = rows[1:] if columns else rows
    for number, row in enumerate(body, start=2 if columns else 1):
        for i, cell in enumerate(row):
            value = cell.strip()
            if not value:
                continue
            kind = columns.get(i) if columns else _guess(value)
            if kind:
                entries.append(Entry(number, kind, value))
    if not entries:
        raise CsvProblem("marketing.csv_no_contact_points")
    return entries


def _guess(value: str) -> str | None:
    if "@" in value:
        return "email"
    digits = sum(c.isdigit() for c in value)
    return "phone" if digits >= 5 and digits >= len(value.replace(" ", "")) - 3 else None


def answer_rows(entries: list[Entry], emails: list[dict], phones: list[dict]) -> list[dict]:
    """Each entry with consent's outcome (answers come per list, in the order sent)."""
    e_iter, p_iter = iter(emails), iter(phones)
    out = []
    for entry in entries:
        outcome = next(e_iter) if entry.kind == "email" else next(p_iter)
        out.append({"line": entry.line, "kind": entry.kind, "value": entry.value,
                    "allowed": bool(outcome["allowed"]), "reason": outcome["reason"]})
    return out


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["line", "kind", "value", "allowed", "reason"])
    for r in rows:
        value = r["value"]
        if value[:1] in ("=", "+", "-", "@") and r["kind"] == "email":
            value = "'" + value  # a spreadsheet must not run a cell as a formula
        writer.writerow([r["line"], r["kind"], value, "yes" if r["allowed"] else "no", r["reason"]])
    return out.getvalue()
