"""Dead letters bounded (issue 15): `-dlq` topics forget with their source topic, and replay
knows which persons a dead letter names (to refuse an erased person's, SPEC §9)."""
from __future__ import annotations

import json
import uuid

import pytest

from shared.messaging.kafka import topic_configs
from shared.messaging.topics import CATALOGUE, all_topic_names
from shared.ops.backup import libpq_args
from shared.ops.operations import persons_named


def test_every_dead_letter_topic_has_its_source_topics_retention():
    for name in all_topic_names():
        source = CATALOGUE.get(name) or CATALOGUE[name.removesuffix("-dlq")]
        assert topic_configs(name) == {"retention.ms": str(source.retention_ms), "cleanup.policy": "delete"}
    assert topic_configs("access-report-part-dlq")["retention.ms"] == str(24 * 3600 * 1000)


def test_a_topic_outside_the_catalogue_has_no_config_to_guess():
    with pytest.raises(KeyError):
        topic_configs("no-such-topic-dlq")


def test_a_dead_letter_names_its_key_subject_and_data_person():
    key_person, subject, data_person = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    envelope = json.dumps({"subject": str(subject), "data": {"person_id": str(data_person)}}).encode()
    assert persons_named(str(key_person).encode(), envelope) == {key_person, subject, data_person}
    assert persons_named(b"crm-17", b"\xff not json") == set()
    assert persons_named(None, b'{"data": "not an object", "subject": 5}') == set()


def test_the_password_goes_to_the_environment_not_the_command_line():
    url, env = libpq_args("postgresql://owner:s3cr%40t@db.example:5432/rekisteri?sslmode=require")
    assert url == "postgresql://owner@db.example:5432/rekisteri?sslmode=require"
    assert env["PGPASSWORD"] == "s3cr@t"
