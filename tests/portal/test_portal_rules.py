"""Pure rules of the portal: reading a campaign CSV and answering it (R8, R13), the
request clock the work queues show (SPEC §10), and the visible retention view (issue 19)."""
from __future__ import annotations

from datetime import date, datetime, UTC

import pytest
from hypothesis import given, strategies as st

from services.portal import clock, csvcheck
from services.portal.retention_view import retention_view


def test_csv_with_a_header_reads_its_email_and_phone_columns_in_order():
    data = "Nimi;Sähköposti;Puhelin\nA;a@example.fi;\nB;;+358 40 1234567\nC;c@example.fi;0401234567\n".encode()
    entries = csvcheck.parse_contact_points(data)
    assert [(e.line, e.kind, e.value) for e in entries] == [
        (2, "email", "a@example.fi"), (3, "phone", "+358 40 1234567"), (4, "email", "c@example.fi"),
        (4, "phone", "0401234567")]


def test_csv_without_a_header_takes_what_looks_like_emails_and_phones():
    entries = csvcheck.parse_contact_points(b"a@example.fi\nnot a contact\n040 123 4567\n")
    assert [(e.line, e.kind) for e in entries] == [(1, "email"), (3, "phone")]


def test_cp1252_file_is_read():
    entries = csvcheck.parse_contact_points("sähköposti\nöö@example.fi\n".encode("cp1252"))
    assert entries[0].value == "öö@example.fi"


@pytest.mark.parametrize("data, key", [(b"", "marketing.csv_empty"), (b"name\nfoo\n", "marketing.csv_no_contact_points"),
                                       (b"x" * (csvcheck.MAX_BYTES + 1), "marketing.csv_too_large")])
def test_unreadable_uploads_name_the_problem(data, key):
    with pytest.raises(csvcheck.CsvProblem) as caught:
        csvcheck.parse_contact_points(data)
    assert caught.value.key == key


def test_answers_follow_the_file_order_and_formulas_are_defused():
    entries = [csvcheck.Entry(2, "email", "=cmd@example.fi"), csvcheck.Entry(2, "phone", "+35840"),
               csvcheck.Entry(3, "email", "b@example.fi")]
    rows = csvcheck.answer_rows(entries, [{"allowed": False, "reason": "banned"}, {"allowed": True, "reason": "no_ban"}],
                                [{"allowed": True, "reason": "no_ban"}])
    assert [r["allowed"] for r in rows] == [False, True, True]
    text = csvcheck.to_csv(rows)
    assert text.splitlines()[1] == "2,email,'=cmd@example.fi,no,banned"


@pytest.mark.parametrize("received, due", [
    (datetime(2026, 1, 31, 12, tzinfo=UTC), date(2026, 2, 28)),
    (datetime(2026, 12, 15, 12, tzinfo=UTC), date(2027, 1, 15)),
    # 23:30 UTC on 31 March is already 1 April in Helsinki
    (datetime(2026, 3, 31, 23, 30, tzinfo=UTC), date(2026, 5, 1)),
])
def test_a_request_is_due_one_calendar_month_after_receipt_in_helsinki(received, due):
    assert clock.due_date(received) == due


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_due_date_is_within_28_to_31_days(received):
    local = received.astimezone(clock.HELSINKI).date()
    assert 28 <= (clock.due_date(received) - local).days <= 31
    assert clock.days_left(received, received) == (clock.due_date(received) - local).days


def test_retention_answer_becomes_dates_holds_by_expiry_and_flags():
    """Issue 19: the shape of retention's GET /persons/{id}/retention, dates as days."""
    view = retention_view({
        "person_id": "p", "state": "passive", "passivation_due": None, "disposition_due": "2027-03-01",
        "rule": "R7", "basis": "last_assignment_ended+365d",
        "holds": [{"hold_id": "h2", "reason": "Tilintarkastus", "until": "2028-01-31"},
                  {"hold_id": "h1", "reason": "Riita", "until": "2027-06-30T20:59:59+00:00"}],
        "blocked": True, "overdue_since": "2027-03-02"})
    assert view["state"] == "passive" and view["passivation_due"] is None
    assert view["disposition_due"] == date(2027, 3, 1) and view["overdue_since"] == date(2027, 3, 2)
    assert [h["hold_id"] for h in view["holds"]] == ["h1", "h2"] and view["holds"][0]["until"] == date(2027, 6, 30)
    assert view["blocked"] is True and view["rule"] == "R7"


@pytest.mark.parametrize("answer", [None, {}, "text", {"person_id": "p"}])
def test_no_retention_answer_is_no_view(answer):
    assert retention_view(answer) is None


def test_an_unknown_state_or_bad_date_is_shown_as_unknown_not_failed():
    view = retention_view({"state": "something_new", "passivation_due": "soon", "holds": None})
    assert view["state"] == "" and view["passivation_due"] is None and view["holds"] == []
