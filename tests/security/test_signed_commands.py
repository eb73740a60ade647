"""Commands between services are signed by their publisher (issue 16 finding 8, SPEC §9).

Anyone able to publish used to be able to send `relationship-ended` and then
`disposition-commanded` (action erase) and have contacts erase the person. Now an unsigned,
forged or wrongly keyed command is dead-lettered with the reason and nothing is applied."""
from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import Rejected
from shared.messaging.parsing import Incoming, parse
from shared.messaging.events import DispositionCommanded
from shared.messaging.outbox import build_envelope
from shared.messaging.signing import Keyring, SigningKeyError
from shared.messaging.topics import topic
from shared.web.auth import Role
from tests.helpers import ExternalSystem, auth, eventually
from tests.integration.test_contacts_events import FAST_HASHES

SPEC = topic("disposition-commanded")


def erase_command(person_id: uuid.UUID, *, source: str = "retention") -> tuple[str, bytes]:
    _, key, envelope = build_envelope(DispositionCommanded(command_id=uuid.uuid4(), person_id=person_id,
                                                           action="erase", basis="test"), source=source)
    return key, envelope.to_bytes()


def test_a_command_signed_by_its_publisher_parses():
    _, raw = erase_command(uuid.uuid4())
    assert json.loads(raw)["signature"]
    assert parse(SPEC, Incoming(raw)).payload.action == "erase"


def test_an_unsigned_command_is_rejected():
    _, raw = erase_command(uuid.uuid4())
    body = json.loads(raw)
    del body["signature"]
    with pytest.raises(Rejected, match="must be signed"):
        parse(SPEC, Incoming(json.dumps(body).encode()))


def test_a_command_whose_content_was_changed_after_signing_is_rejected():
    _, raw = erase_command(uuid.uuid4())
    body = json.loads(raw)
    body["data"]["person_id"] = str(uuid.uuid4())  # aim a signed command at someone else
    with pytest.raises(Rejected, match="does not verify"):
        parse(SPEC, Incoming(json.dumps(body).encode()))


def test_a_command_signed_with_another_key_is_rejected():
    stranger = Keyring({"retention": Ed25519PrivateKey.generate()}, {})
    _, raw = erase_command(uuid.uuid4())
    body = json.loads(raw)
    forged = stranger.sign(parse(SPEC, Incoming(raw)).envelope.model_copy(update={"signature": None}))
    body["signature"] = forged.signature
    with pytest.raises(Rejected, match="does not verify"):
        parse(SPEC, Incoming(json.dumps(body).encode()))


def test_a_command_from_a_source_without_a_public_key_is_rejected():
    _, raw = erase_command(uuid.uuid4(), source="intruder")
    with pytest.raises(Rejected, match="signature"):
        parse(SPEC, Incoming(raw))


def test_a_service_refuses_to_start_without_a_signing_key(monkeypatch):
    for name in ("REKISTERI_SIGNING_KEYRING", "REKISTERI_SIGNING_KEY", "REKISTERI_SIGNING_PUBLIC_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SigningKeyError, match="REKISTERI_SIGNING_KEY"):
        Keyring.from_env().require("contacts", ["disposition-commanded"])


async def test_an_unsigned_erase_command_on_the_bus_erases_nobody(infra, start_service):
    contacts = await start_service("contacts", **FAST_HASHES)
    staff = auth(Role.register_user, user="signing-test")
    resp = await contacts.http.post("/persons", headers=staff, json={
        "first_name": "Allekirjoitus", "last_name": "Testi", "emails": [f"sig-{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    person_id = uuid.UUID(resp.json()["person"]["id"])
    await contacts.http.post(f"/persons/{person_id}/relationships", headers=staff, json={"kind": "customer"})
    rel = (await contacts.http.get(f"/persons/{person_id}", headers=staff)).json()["relationships"][0]["id"]
    assert (await contacts.http.post(f"/relationships/{rel}/end", headers=staff, json={})).status_code == 200
    key, raw = erase_command(person_id)
    body = json.loads(raw)
    del body["signature"]
    async with ExternalSystem(infra.bootstrap) as intruder:
        await intruder.publish_raw("disposition-commanded", json.dumps(body).encode(), key=key.encode())

    async def dead_lettered():
        return await contacts.runtime.pool.fetchval(
            "SELECT reason FROM dead_letters WHERE topic = 'disposition-commanded' AND convert_from(key, 'UTF8') = $1",
            str(person_id))
    assert "must be signed" in await eventually(dead_lettered)
    assert await contacts.runtime.pool.fetchval(
        "SELECT lifecycle_state FROM persons WHERE id = $1", person_id) == "ended"
