"""Every list route pages with a cursor (issue 20, SPEC §7), read off the OpenAPI documents.

A GET route whose success answer is a JSON array, or an object holding a list without a
declared bound (`maxItems`), must take `limit` (with a maximum) and `cursor`, and answer
`next` (null on the last page), so a new list route cannot forget paging: `GET /billing/invoices`
once stopped at 1,000 rows without a sign of the cut. A list that is a single document
(one invoice's lines, one person's export) is named below with the reason it is whole, and
its route's description says so ("Not paged: ...").
The apps are built, not started.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_openapi_contract import SERVICES, document, operations, resolve

# (service, path) -> why the route answers its lists whole.
WHOLE = {
    ("contacts", "/exports/{export_id}"): "one person's portability export (Art. 20): a document, given whole",
    ("contacts", "/assignments/{assignment_id}"): "one assignment and its participants: a record, given whole",
    ("billing", "/billing/invoices/{invoice_id}"): "one invoice: its lines are the document",
    ("billing", "/billing/customers/{customer_id}/usage"): "one customer's usage for one period: a report,"
                                                             " one row per meter and dimension set, as invoiced",
    ("retention", "/evidence/{person_id}"): "one person's lifecycle evidence: one row per command",
    ("retention", "/persons/{person_id}/retention"): "one person's dates and the legal holds on them",
}


def _is_array(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = resolve(doc, schema)
    return schema.get("type") == "array" or any(resolve(doc, s).get("type") == "array" for s in schema.get("anyOf", []))


def _bounded(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = resolve(doc, schema)
    variants = [resolve(doc, s) for s in schema.get("anyOf", [schema])]
    return all("maxItems" in v for v in variants if v.get("type") == "array")


def unbounded_lists(doc: dict[str, Any], op: dict[str, Any]) -> list[str]:
    """The answer's lists without a bound: `(answer)` for a bare array, else the property names."""
    media = op["responses"].get("200", {}).get("content", {}).get("application/json")
    if media is None:
        return []
    schema = resolve(doc, media.get("schema", {}))
    if _is_array(doc, schema):
        return [] if _bounded(doc, schema) else ["(answer)"]
    return [name for name, prop in schema.get("properties", {}).items()
            if _is_array(doc, prop) and not _bounded(doc, prop)]


def paging_problems(service: str) -> list[str]:
    """Every GET route answering an unbounded list without `limit`, `cursor` and `next`."""
    doc = document(service)
    found = []
    for method, path, op in operations(service):
        lists = unbounded_lists(doc, op) if method == "GET" else []
        if not lists or (service, path) in WHOLE:
            continue
        where = f"GET {path} ({', '.join(lists)})"
        params = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
        if "maximum" not in params.get("limit", {}).get("schema", {}):
            found.append(f"{where}: no `limit` query parameter with a maximum")
        if "cursor" not in params:
            found.append(f"{where}: no `cursor` query parameter")
        answer = resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
        if "next" not in answer.get("properties", {}) or "next" not in answer.get("required", []):
            found.append(f"{where}: the answer has no `next`")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_list_route_takes_limit_and_cursor_and_answers_next(service: str) -> None:
    assert paging_problems(service) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_route_answered_whole_says_why_in_its_description(service: str) -> None:
    """The allow-list is true: each entry is a GET route of the service with unbounded lists,
    and its description tells the reader it is not paged and why."""
    doc = document(service)
    ops = {path: op for method, path, op in operations(service) if method == "GET"}
    for (owner, path), reason in WHOLE.items():
        if owner != service:
            continue
        assert path in ops, f"{path}: no such GET route (stale allow-list entry)"
        assert unbounded_lists(doc, ops[path]), f"{path}: has no unbounded list, drop it from WHOLE"
        assert "Not paged:" in ops[path].get("description", ""), f"{path}: the description does not say {reason!r}"


def test_a_bare_array_answer_is_found_unpaged() -> None:
    """The check itself: an answer that is a bare array of rows, or holds one, is a list route."""
    doc: dict[str, Any] = {"components": {"schemas": {}}}
    bare = {"responses": {"200": {"content": {"application/json": {"schema": {"type": "array", "items": {}}}}}}}
    held = {"responses": {"200": {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "rows": {"type": "array"}, "codes": {"type": "array", "maxItems": 4}}}}}}}}
    assert unbounded_lists(doc, bare) == ["(answer)"]
    assert unbounded_lists(doc, held) == ["rows"]
