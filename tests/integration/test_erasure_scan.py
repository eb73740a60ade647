"""Erasure reaches every copy (issue 15, SPEC §9, R7, R8): a person with a distinctive name,
email and phone goes through the real services — a ban, an assignment, usage, an access
report — and is erased the way the register erases (relationship ended → passivation → final
disposition). Then every text, jsonb, array and bytea value of every table of every schema is
scanned, pg_dump-like, and every topic (dead-letter topics too) is read from offset 0: none of
the values appears in plain, nor as an unkeyed SHA-256 of its normal form. The suppression
list keeps only keyed digests (allowed by R8), and consent still says banned."""
from __future__ import annotations

import hashlib
import random
import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.messaging.events import OptoutRegistered, Purpose, UsageRecorded
from shared.messaging.topics import all_topic_names
from tests.helpers import ExternalSystem, envelope_for, eventually
from tests.integration.test_rights_erasure import (
    METER, OWNER, USER, access_report, erased_by_retention, four, new_customer, subject,
)

__all__ = ["four"]  # the fixture, imported for its name


def distinctive_person() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    national, national2 = (f"{prefix}{random.randint(1000000, 9999999)}" for prefix in ("40", "50"))
    return {"first_name": f"Skannatu{tag}", "last_name": f"Poistettu{tag}", "email": f"scan.{tag}@example.fi",
            "email2": f"toinen.{tag}@example.com", "phone": f"+358{national}", "phone2": f"+358{national2}",
            "phone_written": f"0{national[:2]} {national[2:]}", "phone2_written": f"+358 {national2[:2]} {national2[2:]}"}


def needles(person: dict[str, str]) -> dict[str, bytes]:
    """What may not appear anywhere: each value, and the unkeyed SHA-256 and MD5 of each
    contact point's normal form (both emails, both phones)."""
    plain = {k: person[k].lower() for k in ("first_name", "last_name", "email", "email2", "phone", "phone2")}
    plain |= {f"{k}_national": person[k][4:] for k in ("phone", "phone2")}  # without the country code
    points = ("email", "email2", "phone", "phone2")
    hashed = {f"{h}({k})": getattr(hashlib, h)(plain[k].encode()).hexdigest() for k in points for h in ("sha256", "md5")}
    hashed |= {f"sha256({kind}:{k})": hashlib.sha256(f"{kind}:{plain[k]}".encode()).hexdigest()
               for k in points for kind in ("email", "phone") if k.startswith(kind)}
    return {k: v.encode() for k, v in (plain | hashed).items()}


async def scan_database(database_url: str, found: dict[str, bytes]) -> list[str]:
    """Every row of every table of every schema (information_schema), read whole as text, the
    way pg_dump writes it: text, jsonb and arrays as written, bytea as hex (so a needle is
    looked for as text and as the hex of its bytes)."""
    names = [*found, *(f"{n} (bytea)" for n in found)]
    texts = [*(v.decode() for v in found.values()), *(v.hex() for v in found.values())]
    conn = await asyncpg.connect(database_url)
    hits = []
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        assert {r["table_schema"] for r in tables} >= {"contacts", "consent", "retention", "billing", "keystore"}
        for r in tables:
            table = f'"{r["table_schema"]}"."{r["table_name"]}"'
            held = await conn.fetchval(
                f"SELECT array_agg(DISTINCT n.name) FROM {table} AS x, unnest($1::text[], $2::text[]) AS n(name, needle)"
                " WHERE strpos(lower(x::text), n.needle) > 0", names, texts)
            hits += [f"{table} holds {name}" for name in held or ()]
    finally:
        await conn.close()
    return hits


async def scan_topics(bootstrap: str, found: dict[str, bytes], person_id: str,
                      theirs: frozenset[tuple[str, int, int]] = frozenset()) -> tuple[list[str], int]:
    """Every topic from its earliest offset to its end: values, keys and headers. Also counts
    the records keyed by the person or naming them, to show they were read. `theirs`: records
    (topic, partition, offset) another system published in plain, which are its own and not
    the register's to rewrite (docs/PRIVACY.md, "Other systems"): they go with the topic's retention."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    hits, mine = [], 0
    try:
        cluster = await consumer._client.fetch_all_metadata()
        for topic in all_topic_names():
            tps = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
            if not tps:
                continue
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                for tp, msgs in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                    for msg in msgs:
                        if (topic, msg.partition, msg.offset) in theirs:
                            continue
                        blob = b"\n".join([msg.value or b"", msg.key or b"", *(v for _, v in msg.headers or [])]).lower()
                        mine += person_id.encode() in blob
                        hits += [f"{topic}@{msg.partition}:{msg.offset} holds {n}" for n, v in found.items() if v in blob]
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return hits, mine


async def test_erased_persons_values_are_nowhere_in_the_database_or_on_any_topic(infra, database_url, four):
    """Issue 15's done-when: a name, two emails, two phones, bans, usage, an access report, a
    rectification and dead-lettered events carrying their email and phone (H1)."""
    contacts, consent, retention, billing = (four[n] for n in ("contacts", "consent", "retention", "billing"))
    now = retention.runtime.clock.now()
    person = distinctive_person()
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": person["first_name"], "last_name": person["last_name"], "emails": [person["email"]],
        "phones": [person["phone_written"], person["phone2_written"]], "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship", "usage_billing", "assignments"], "source": "person_email"})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["person"]["id"]
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={
        "kind": "customer", "started_at": (now - timedelta(days=400)).isoformat()})
    asg = await contacts.http.post("/assignments", headers=USER, json={
        "given_by": "customer", "participants": [pid], "started_at": (now - timedelta(days=300)).isoformat()})
    assert asg.status_code == 201, asg.text
    ended = await contacts.http.post(f"/assignments/{asg.json()['id']}/end", headers=USER,
                                     json={"ended_at": (now - timedelta(days=200)).isoformat()})
    assert ended.status_code == 200, ended.text
    # R14: the second email comes by a rectification, asked by the person and approved
    asked = await contacts.http.post("/me/rectifications", headers=subject(pid), json={
        "changes": {"emails": [person["email"], person["email2"]]}, "reason": "a second address"})
    assert asked.status_code == 201, asked.text
    decided = await contacts.http.post(f"/rectifications/{asked.json()['id']}/decision", headers=OWNER,
                                       json={"approve": True, "reason": "verified"})
    assert decided.status_code == 200, decided.text

    keyring = consent.runtime.settings.suppression_keyring()

    async def consent_knows(kind: str, value: str) -> bool:
        return bool(await consent.runtime.pool.fetchval(
            "SELECT true FROM contact_point WHERE person_id = $1 AND digest = $2", uuid.UUID(pid),
            keyring.digest(kind, value)))
    for kind, value in (("phone", person["phone"]), ("phone", person["phone2"]), ("email", person["email2"])):
        await eventually(lambda: consent_knows(kind, value))  # noqa: B023 - awaited here
    for channel in ("phone", "email"):
        ban = await consent.http.post("/me/consents", headers=subject(pid), json={
            "purpose": "distance_selling", "channel": channel, "decision": "ban", "method": "self_service_form"})
        assert ban.status_code == 200, ban.text

    async def banned(channel: str = "phone", **point: str) -> bool:
        resp = await consent.http.post("/checks", headers=OWNER, json={
            "purpose": "distance_selling", "channel": channel, **point})
        return resp.json()["allowed"] is False
    await eventually(lambda: banned(phone=person["phone"]))
    await eventually(lambda: banned("email", email=person["email2"]))
    customer = await new_customer(billing)
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(UsageRecorded(customer_id=customer, person_id=uuid.UUID(pid), meter=METER,
                                             quantity=Decimal("3"), time=now - timedelta(days=40)), source="scan-15")
        # Dead letters carrying the person's values in plain (H1): another system's opt-out naming
        # them and their email, invalid (an unknown purpose), dead-lettered by consent, contacts and
        # retention; and a broken CRM import naming only the second email and the second phone.
        _t, _k, optout = envelope_for(OptoutRegistered(person_id=uuid.UUID(pid), emails=[person["email"]],
                                                       purposes=[Purpose.distance_selling], source="crm"), source="crm")
        invalid = optout.model_copy(update={"data": {**optout.data, "purposes": ["spam"]}})
        await platform.publish_envelope("optout-registered", invalid)
        broken = f'{{"external_ref": "crm-{pid[:8]}", "emails": ["{person["email2"]}"], "phones": ["{person["phone2_written"]}"'
        await platform.publish_raw("contact-upserted", broken.encode(), key=b"crm-import")
    theirs = frozenset((m.topic, m.partition, m.offset) for m in platform.sent)  # the other system's own copies
    await eventually(lambda: billing.runtime.pool.fetchval(
        "SELECT count(*) FROM usage_persons WHERE person_id = $1", uuid.UUID(pid)))
    dead_letters = {name: four[name].runtime.pool for name in ("consent", "contacts", "retention")}
    for name, pool in dead_letters.items():  # the dead letters exist first, each service's own
        assert await eventually(lambda: pool.fetchval(  # noqa: B023 - awaited here
            "SELECT count(*) FROM dead_letters WHERE original = $1", invalid.to_bytes())), name
    assert await eventually(lambda: contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM dead_letters WHERE original = $1", broken.encode()))
    report = await access_report(contacts, {"person_id": pid})
    assert {i["service"] for i in report["items"]} == {"contacts", "consent", "retention", "billing"}
    assert person["email"] in str(report)  # the sealed parts opened for the report
    # Before erasure too: what the register itself put on the bus holds no personal value in
    # plain (the sealed fields travel as ciphertext, the -dlq copies sealed; issue 15's "raw
    # bytes of every topic").
    hits, mine = await scan_topics(infra.bootstrap, needles(person), pid, theirs)
    assert mine >= 3 and hits == []  # registered, asked, answered: read, and say nothing

    await contacts.http.post(f"/relationships/{rel.json()['id']}/end", headers=USER, json={"ended_at": now.isoformat()})
    await erased_by_retention(contacts, retention, pid, now)

    found = needles(person)
    assert await scan_database(database_url, found) == []
    hits, mine = await scan_topics(infra.bootstrap, found, pid, theirs)
    assert mine >= 5 and hits == []  # registered, banned, asked, answered, erased: read, and say nothing
    for name, pool in dead_letters.items():  # gone by the person id or by the contact points
        assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE original = $1", invalid.to_bytes()) == 0, name

    async def key_destroyed() -> str | None:  # the erasure's last step, on the evidence
        resp = await retention.http.get(f"/evidence/{pid}", headers=OWNER)
        return resp.json()["data_key_destroyed_at"]
    assert await eventually(key_destroyed)
    assert await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM keystore.data_key WHERE person_id = $1", uuid.UUID(pid)) == 0

    # R8: the ban outlives the person, on the keyed suppression list, however the phone is written
    for phone in ("phone", "phone2"):
        national = person[phone][4:]
        for written in (person[phone], "+3580" + national, f"0{national[:2]} {national[2:5]} {national[5:]}",
                        f"+358 {national[:2]} {national[2:]}"):
            assert await banned(phone=written), written
    for email in ("email", "email2"):
        assert await banned("email", email=person[email].upper()), email
