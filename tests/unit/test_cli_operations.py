"""Pure parts of the operator CLI (issue 8): publication building, id parsing, documents."""
from __future__ import annotations

import io
import uuid

import pytest

from shared.ops.cli import _age, build_parser
from shared.ops.operations import OperationError, Progress, build_publication, build_publications, load_documents, parse_refs


def usage(**overrides):
    return {"customer_id": str(uuid.uuid4()), "meter": "cpu_hours",
            "quantity": "1.5", "time": "2026-11-01T10:00:00+00:00", **overrides}


def test_payload_is_wrapped_keyed_by_the_catalogue_key():
    """SPEC §4: key and subject are the entity whose order matters (customer for usage)."""
    data = usage()
    key, envelope = build_publication("usage-recorded", data, source="ops")
    assert key == data["customer_id"] == envelope.subject
    assert envelope.type == "usage-recorded" and envelope.source == "ops" and envelope.schema_version == 1


def test_full_envelope_keeps_its_id_so_a_second_publication_is_a_no_op():
    data = usage()
    doc = {"id": str(uuid.uuid4()), "type": "usage-recorded", "source": "platform-x", "subject": data["customer_id"],
           "time": "2026-11-01T10:00:00Z", "schema_version": 1, "data": data}
    _, envelope = build_publication("usage-recorded", doc, source="ignored")
    assert str(envelope.id) == doc["id"] and envelope.source == "platform-x"


@pytest.mark.parametrize("change, message", [
    ({"type": "invoice-issued"}, "type does not match topic usage-recorded"),
    ({"schema_version": 2}, "schema_version must be 1"),
    ({"subject": "someone-else"}, "subject must equal data.customer_id"),
    ({"unknown": 1}, "unknown: Extra inputs are not permitted"),
])
def test_envelope_mismatches_are_refused(change, message):
    data = usage()
    doc = {"id": str(uuid.uuid4()), "type": "usage-recorded", "source": "p", "subject": data["customer_id"],
           "time": "2026-11-01T10:00:00Z", "data": data, **change}
    with pytest.raises(OperationError, match=message):
        build_publication("usage-recorded", doc, source="ops")


def test_invalid_data_names_fields_never_values():
    with pytest.raises(OperationError) as caught:
        build_publication("usage-recorded", usage(customer_id="maija@example.fi", quantity="lots"), source="ops")
    text = str(caught.value)
    assert "customer_id" in text and "quantity" in text
    assert "maija" not in text and "lots" not in text


def test_all_or_nothing_names_the_bad_event():
    with pytest.raises(OperationError, match="event 1: .*meter"):
        build_publications("usage-recorded", [usage(), usage(meter=None)], source="ops")


def test_unknown_topic_and_non_objects_are_refused():
    with pytest.raises(OperationError, match="not in the catalogue"):
        build_publication("usage-recorded-dlq", usage(), source="ops")
    with pytest.raises(OperationError, match="JSON object"):
        build_publication("usage-recorded", [usage()], source="ops")
    with pytest.raises(OperationError, match="invalid envelope: id: Field required"):  # envelopes carry their id
        build_publication("usage-recorded", {"type": "usage-recorded", "source": "p", "subject": "s",
                                             "time": "2026-11-01T10:00:00Z", "data": usage()}, source="ops")


def test_documents_are_an_object_an_array_or_json_lines():
    assert load_documents('{"a": 1}') == [{"a": 1}]
    assert load_documents('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    assert load_documents('{"a": 1}\n\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    with pytest.raises(OperationError, match="not JSON"):
        load_documents('{"a": ')
    with pytest.raises(OperationError, match="no JSON"):
        load_documents("  ")


def test_dead_letter_refs_need_a_service():
    assert parse_refs(["consent:3", "consent:4", "billing:1"], None) == {"consent": [3, 4], "billing": [1]}
    assert parse_refs(["7"], "retention") == {"retention": [7]}
    for refs, service, message in ((["7"], None, "needs a service"), (["consent:x"], None, "SERVICE:NUMBER"),
                                   (["consent:1"], "billing", "not in --service billing")):
        with pytest.raises(OperationError, match=message):
            parse_refs(refs, service)


def test_progress_reports_every_tenth_and_the_end_off_a_terminal():
    stream = io.StringIO()
    bar = Progress("replaying", 20, stream)
    for _ in range(20):
        bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "replaying 1/20" and lines[-1] == "replaying 20/20" and len(lines) <= 11


def test_ages_are_human():
    assert [_age(None), _age(5), _age(90), _age(7200), _age(3 * 86400)] == ["-", "5.0 s", "1.5 min", "2.0 h", "3.0 d"]


def test_replay_needs_ids_or_all_not_both(capsys):
    from shared.ops.cli import main

    assert main(["dlq", "replay"]) == 2
    assert main(["dlq", "replay", "consent:1", "--all"]) == 2
    assert "exactly one of them" in capsys.readouterr().err
    assert build_parser().parse_args(["publish", "usage-recorded", "-f", "-"]).source == "rekisteri-cli"


def test_token_is_signed_with_the_configured_secret(monkeypatch, capsys):
    """SPEC §7: operators mint staff tokens with the CLI; the secret comes from the environment."""
    from shared.web.auth import verify_token
    from shared.ops.cli import main

    monkeypatch.setenv("REKISTERI_TOKEN_SECRET", "operator-secret-for-this-test-only-0123456789")
    assert main(["token", "--role", "register_owner", "--user", "ops-7", "--ttl", "60"]) == 0
    principal = verify_token("operator-secret-for-this-test-only-0123456789", capsys.readouterr().out.strip())
    assert principal.user == "ops-7" and principal.role.value == "register_owner"
