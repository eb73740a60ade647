"""Pure rules of the access report (R12): twelve months, progress and lateness, contacts'
slice with sources (R4) and purposes (R1), the assembled report and its HTML rendering."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from services.contacts import access_report as ar
from services.contacts.report_html import render_html

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_r12_one_request_a_year_is_free():
    assert not ar.is_chargeable([], NOW)
    assert ar.is_chargeable([NOW - timedelta(days=364)], NOW)
    assert not ar.is_chargeable([datetime(2025, 11, 25, 12, 0, tzinfo=UTC)], NOW)  # exactly twelve months ago
    assert ar.is_chargeable([datetime(2025, 11, 25, 12, 1, tzinfo=UTC)], NOW)


def test_r12_twelve_months_before_a_leap_day():
    assert ar.twelve_months_before(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2027, 2, 28, tzinfo=UTC)


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=5))
def test_r12_chargeable_iff_a_request_within_the_last_year(days_ago):
    earlier = [NOW - timedelta(days=d) for d in days_ago]
    assert ar.is_chargeable(earlier, NOW) == any(d < 365 for d in days_ago)


def test_r12_progress_names_missing_then_late_services():
    asked = NOW - timedelta(seconds=10)
    waiting = ar.progress(["contacts", "consent", "billing"], ["contacts", "billing"], asked, NOW, timeout_s=30)
    assert waiting == {"answered": ["billing", "contacts"], "missing": ["consent"], "late": False,
                       "late_services": []}
    late = ar.progress(["contacts", "consent", "billing"], ["contacts"], asked, NOW, timeout_s=5)
    assert late["late"] and late["late_services"] == ["billing", "consent"]
    held = ar.progress(["contacts", "consent"], ["contacts"], None, NOW, timeout_s=0)
    assert not held["late"]  # a request awaiting the owner's decision was never sent: not late
    assert ar.is_complete(["a", "b"], ["b", "a", "c"]) and not ar.is_complete(["a", "b"], ["a"])


def everything() -> dict:
    pid = uuid.uuid4()
    return {
        "person": {"id": pid, "first_name": "Aino", "last_name": "Ahola", "title": None, "expertise": None,
                   "emails": ["aino@example.fi"], "phones": [], "other_contact": {}, "organisation_id": None,
                   "legal_basis": "customer_relationship", "purposes": ["customer_relationship", "assignments"],
                   "lifecycle_state": "active", "external_ref": None, "created_at": NOW, "state_changed_at": NOW},
        "field_sources": {"first_name": {"source": "b2b_register", "recorded_at": NOW},
                          "last_name": {"source": "b2b_register", "recorded_at": NOW},
                          "emails": {"source": "person_web", "recorded_at": NOW},
                          "username": {"source": "staff", "recorded_at": NOW},
                          "password": {"source": "staff", "recorded_at": NOW}},
        "organisation": None,
        "account": {"username": "aino", "nickname": None, "identifiers": {}, "created_at": NOW,
                    "password_changed_at": NOW},
        "relationships": [{"id": uuid.uuid4(), "kind": "customer", "organisation_id": None, "started_at": NOW,
                           "ended_at": None, "source": "staff"}],
        "assignments": [{"id": uuid.uuid4(), "given_by": "principal", "title": "Cloud move", "status": "open",
                         "started_at": NOW, "ended_at": None}],
        "service_records": [],
        "marketing_bans": ["distance_selling"],
        "rectifications": [],
    }


def test_r12_r4_r1_contacts_slice_has_source_and_purpose_for_every_item():
    items = ar.person_items(everything())
    assert all(i["source"] and i["purpose"] for i in items)
    by_field = {(i["category"], i["field"]): i for i in items}
    assert by_field[("basic_data", "first_name")]["source"] == "b2b_register"
    emails = by_field[("basic_data", "emails")]
    assert emails["value"] == ["aino@example.fi"] and emails["source"] == "person_web"
    assert by_field[("basic_data", "first_name")]["purpose"] == "assignments,customer_relationship"
    assert by_field[("account", "password")]["value"] == "argon2id hash, not readable"  # R3: never the hash
    assert by_field[("marketing", "ban")]["value"] == "distance_selling"
    assert by_field[("assignment", "principal")]["value"]["title"] == "Cloud move"
    assert ("basic_data", "title") not in by_field  # empty fields are not listed


def test_r12_report_normalises_items_of_every_service_and_renders_both_languages():
    request = {"id": uuid.uuid4(), "person_id": None, "created_at": NOW, "fulfilled_at": NOW,
               "channel": "in_person", "verified_by": "owner", "chargeable": True, "decision": "waive"}
    parts = {"consent": [{"type": "suppression_record", "value": "<b>x@example.fi</b>"}],
             "contacts": [], "billing": [{"category": "usage", "field": "meter", "value": 3,
                                          "source": "service_event", "purpose": ["usage_billing"]}]}
    report = ar.assemble(request, parts)
    assert report["services"] == ["contacts", "billing", "consent"]
    consent = [i for i in report["items"] if i["service"] == "consent"][0]
    assert consent["category"] == "suppression_record" and consent["source"] == "unknown"
    flat = ar.assemble(request, {"billing": [{"purpose": "usage_billing", "meter": "calls", "events": 2}]})
    assert flat["items"] == [{"service": "billing", "category": "record", "field": "record", "source": "unknown",
                              "purpose": "usage_billing", "value": {"meter": "calls", "events": 2}}]
    assert [i["purpose"] for i in report["items"] if i["service"] == "billing"] == ["usage_billing"]
    fi, en = render_html(report, "fi"), render_html(report, "en")
    assert "Tässä palvelussa ei ole sinusta tietoja." in fi and "This service holds no data about you." in en
    assert "Käytön raportointi ja laskutus" in fi and "Usage reporting and billing" in en
    assert "&lt;b&gt;x@example.fi&lt;/b&gt;" in fi and "<b>x@" not in fi
    assert "Maksullinen" in fi and "kyllä" in fi
