"""Bad events on every consumed topic of every service (SPEC §4, issue 9).

For each catalogued topic, every service that consumes it gets an empty message, malformed
JSON, a truncated envelope, an oversized (> 1 MB) envelope, an envelope for another topic,
data that is not an object, and data whose key field has the wrong type. Each must be
dead-lettered by each consumer with a reason (a row in its `dead_letters`, a message on
`<topic>-dlq` with the reason header), and the consumer must keep running: a good event sent
after them is applied (its inbox row is committed).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.messaging import events as ev
from shared.messaging.signing import SIGNED_TOPICS, SIGNING_SERVICES
from shared.messaging.parsing import Incoming, parse
from shared.messaging.topics import CATALOGUE, EXTERNAL, dead_letter_topic, topic
from tests.helpers import auth, envelope_for, eventually, read_topic
from tests.integration.test_fuzz_isolated import isolated  # noqa: F401 - fixture

INCARNATION = "rekisteri-broker-incarnation"  # a marker with no inbox: its poison has a test of its own below
OVERSIZE = 1_100_000
NOW = datetime.now(UTC)


def consumed_topics() -> list[str]:
    return [t.name for t in CATALOGUE.values()
            if t.name != INCARNATION and t.consumers and t.consumers != (EXTERNAL,)]


class World:
    """Ids the good events refer to, so every consumer can apply them."""

    def __init__(self, person: uuid.UUID) -> None:
        self.person = person
        self.relationship = uuid.uuid4()
        self.assignment = uuid.uuid4()
        self.request = uuid.uuid4()
        self.customer = uuid.uuid4()

    def good(self, topic: str) -> ev.Payload:
        p, now = self.person, NOW - timedelta(minutes=5)
        return {
            "contact-upserted": lambda: ev.ContactUpserted(
                external_ref=f"fuzz-{uuid.uuid4()}", source=ev.DataSource.b2b_register, first_name="Fuzz",
                last_name="Person"),
            "contact-registered": lambda: ev.ContactRegistered(person_id=p, source=ev.DataSource.staff,
                                                               lifecycle_state="prospect"),
            "contact-updated": lambda: ev.ContactUpdated(person_id=p, changed_fields=["title"]),
            "contact-passivated": lambda: ev.ContactPassivated(person_id=p),
            "contact-reactivated": lambda: ev.ContactReactivated(person_id=p),
            "contact-erased": lambda: ev.ContactErased(person_id=uuid.uuid4()),
            "contact-transferred-to-marketing": lambda: ev.ContactTransferredToMarketing(person_id=uuid.uuid4()),
            "relationship-started": lambda: ev.RelationshipStarted(
                person_id=p, relationship_id=self.relationship, kind="customer", started_at=now),
            "relationship-ended": lambda: ev.RelationshipEnded(person_id=p, relationship_id=self.relationship,
                                                               ended_at=now + timedelta(minutes=1)),
            "assignment-started": lambda: ev.AssignmentStarted(person_id=p, assignment_id=self.assignment,
                                                               given_by="customer", started_at=now),
            "assignment-ended": lambda: ev.AssignmentEnded(person_id=p, assignment_id=self.assignment,
                                                           ended_at=now + timedelta(minutes=1)),
            "optout-registered": lambda: ev.OptoutRegistered(person_id=p, purposes=[ev.Purpose.distance_selling],
                                                             source="fuzz"),
            "consent-granted": lambda: ev.ConsentGranted(person_id=p, purpose=ev.Purpose.direct_advertising,
                                                         channel=ev.Channel.email, source="fuzz", method="web",
                                                         actor="fuzz"),
            "consent-withdrawn": lambda: ev.ConsentWithdrawn(person_id=p, purpose=ev.Purpose.direct_advertising,
                                                             channel=ev.Channel.email, source="fuzz", method="web",
                                                             actor="fuzz"),
            "passivation-commanded": lambda: ev.PassivationCommanded(command_id=uuid.uuid4(), person_id=p,
                                                                     basis="fuzz"),
            "disposition-commanded": lambda: ev.DispositionCommanded(command_id=uuid.uuid4(), person_id=p,
                                                                     action="erase", basis="fuzz"),
            # its own person: the world's is erased by the good disposition-commanded, and that
            # erasure rightly drops the dead letters keyed by them (SPEC §9)
            "disposition-confirmed": lambda: ev.DispositionConfirmed(person_id=uuid.uuid4(), service="contacts",
                                                                     action="passivate", confirmed_at=now),
            "subject-tokens-revoked": lambda: ev.SubjectTokensRevoked(person_id=uuid.uuid4(), token_version=1),
            # its own person too: the world's is not to be made due for erasure (issue 14)
            "erasure-requested": lambda: ev.ErasureRequested(person_id=uuid.uuid4(), request_id=uuid.uuid4()),
            "access-requested": lambda: ev.AccessRequested(request_id=self.request, person_id=p),
            "access-report-part": lambda: ev.AccessReportPart(request_id=self.request, service="consent"),
            "usage-recorded": lambda: ev.UsageRecorded(customer_id=self.customer, meter="fuzz_meter",
                                                       quantity=Decimal("1.5"), time=now),
            "payment-received": lambda: ev.PaymentReceived(payment_id=f"fuzz-{uuid.uuid4()}", reference="1232",
                                                           amount=Decimal("1.00"), paid_on=now.date()),
        }[topic]()


def bad_messages(topic: str, good: bytes) -> dict[str, bytes]:
    envelope = json.loads(good)
    key_field = CATALOGUE[topic].key

    def variant(**changes: Any) -> bytes:
        return json.dumps({**envelope, "id": str(uuid.uuid4()), **changes}).encode()

    other_topic = "usage-recorded" if topic != "usage-recorded" else "contact-erased"
    return {
        "empty": b"",
        "malformed": b'{"id": "' + topic.encode() + b'", "type": [unclosed',
        "truncated": good[: len(good) // 2],
        "oversized": variant(data={**envelope["data"], "padding": "x" * OVERSIZE}),
        "wrong_topic": variant(type=other_topic),
        "data_not_object": variant(data=f"not an object {uuid.uuid4()}"),
        "wrong_type": variant(data={**envelope["data"], key_field: [12345, {"nested": True}]}),
    }


async def inbox_has(pool: Any, event_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", str(event_id)))


async def prepare(isolated: Any) -> World:
    """A person in contacts, a meter and a customer in billing, an access request: what the good
    events refer to."""
    contacts, billing = isolated.http["contacts"], isolated.http["billing"]
    person = await contacts.post("/persons", headers=auth("register_user"), json={
        "first_name": "Fuzz", "last_name": "Target", "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"]})
    assert person.status_code == 201, person.text
    meter = await billing.put("/billing/meters/fuzz_meter", headers=auth("billing"), json={"aggregation": "sum"})
    assert meter.status_code in (200, 201), meter.text
    world = World(uuid.UUID(person.json()["person"]["id"]))
    plan = await billing.put(f"/billing/customers/{world.customer}/plan", headers=auth("billing"), json={})
    assert plan.status_code == 200, plan.text
    request = await contacts.post("/access-requests", headers=auth("register_owner"), json={
        "person_id": str(world.person), "verification": "in_person", "verified_by": "fuzz-desk"})
    assert request.status_code == 201, request.text
    world.request = uuid.UUID(request.json()["id"])  # a part for it is a duplicate answer: applied as a no-op
    return world


async def test_bad_events_on_every_consumed_topic_are_dead_lettered_and_consumers_carry_on(isolated):
    world = await prepare(isolated)
    await eventually(lambda: isolated.runtime("billing").pool.fetchval(
        "SELECT count(*) FROM meters WHERE name = 'fuzz_meter'"), timeout=10)
    producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap, acks="all", linger_ms=1,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent: dict[str, dict[str, bytes]] = {}
    problems: list[str] = []
    try:
        for topic in consumed_topics():
            # a command must come signed by a service that publishes it (SPEC §9); the rest from outside
            source = (next(p for p in CATALOGUE[topic].producers if p in SIGNING_SERVICES)
                      if topic in SIGNED_TOPICS else "fuzz-system")
            _t, key, good = envelope_for(world.good(topic), source=source)
            bad = bad_messages(topic, good.to_bytes())
            sent[topic] = bad
            for value in bad.values():
                await producer.send_and_wait(topic, value, key=key.encode())
            # Each consumer dead-letters the bad ones, with a reason, before the good one comes:
            # a good erasure rightly drops the dead letters keyed by its person (SPEC §9).
            for service in CATALOGUE[topic].consumers:
                pool = isolated.runtime(service).pool

                async def all_dead_lettered(pool=pool, service=service, bad=bad, topic=topic) -> dict[bytes, str] | None:
                    rows = await pool.fetch("SELECT original, reason FROM dead_letters WHERE consumer = $1",
                                            f"{service}.{topic}")
                    reasons = {bytes(r["original"]): r["reason"] for r in rows}
                    return reasons if all(reasons.get(v) for v in bad.values()) else None
                try:
                    reasons = await eventually(all_dead_lettered)
                except AssertionError:
                    problems += [f"{service}: {kind} {topic} not dead-lettered with a reason" for kind in bad]
                    continue
                if "too large" not in (reasons.get(bad["oversized"]) or ""):
                    problems.append(f"{service}: oversized {topic} dead-lettered without its size as the reason")
            await producer.send_and_wait(topic, good.to_bytes(), key=key.encode())
            for service in CATALOGUE[topic].consumers:
                pool = isolated.runtime(service).pool
                try:
                    await eventually(lambda: inbox_has(pool, good.id))  # noqa: B023 - awaited here
                except AssertionError:
                    reason = await pool.fetchval("SELECT reason FROM dead_letters WHERE event_id = $1", str(good.id))
                    problems.append(f"{service}: good {topic} not applied (dead letter: {reason})")
    finally:
        await producer.stop()
    assert problems == []

    # Every dead letter also reaches `<topic>-dlq` with its reason (checked for one topic per service).
    for service, topic in (("contacts", "contact-upserted"), ("consent", "contact-registered"),
                           ("retention", "relationship-started"), ("billing", "usage-recorded")):
        consumer = f"{service}.{topic}"
        expected = {hashlib.sha256(v).hexdigest() for v in sent[topic].values()}
        originals = tuple(sent[topic].values())

        def all_relayed(records: list[dict[str, Any]], consumer: str = consumer, expected: set = expected,
                        originals: tuple[bytes, ...] = originals) -> bool:
            # Opened from its seal (issue 15, H1); an oversized original is relayed truncated: its
            # first bytes, and the size of the whole (kept in the table). A copy that no longer
            # opens is a dead letter deleted since (its key went with it): one naming a person
            # the fuzzing erased, say.
            mine, gone = set(), 0
            for r in records:
                if r["headers"].get("x-consumer") != consumer or not r["headers"].get("x-dead-letter-reason"):
                    continue
                value = r["value"] or b""
                if value == r["raw"]:
                    gone += 1
                    continue
                if r["headers"].get("x-original-truncated"):
                    size = int(r["headers"]["x-original-bytes"])
                    mine |= {hashlib.sha256(v).hexdigest() for v in originals if len(v) == size and v.startswith(value)}
                else:
                    mine.add(hashlib.sha256(value).hexdigest())
            return len(expected - mine) <= gone

        await read_topic(isolated.bootstrap, dead_letter_topic(topic), until=all_relayed, timeout=20,
                         keystore_database_url=isolated.database_url)


async def test_a_good_usage_event_is_not_rejected_while_the_billing_catalogue_reloads(isolated):
    """Found by the SIGKILL test: just after billing restarts, a usage event validated while the
    catalogue's first load holds its lock waited for it, then kept its stale answer ("meter:
    unknown meter") and was dead-lettered. A good event must never be dead-lettered (P3)."""
    billing, pool = isolated.apps["billing"].state.billing, isolated.runtime("billing").pool
    customer = uuid.uuid4()
    client = isolated.http["billing"]
    assert (await client.put("/billing/meters/reload_meter", headers=auth("billing"),
                             json={"aggregation": "sum"})).status_code == 200
    assert (await client.put(f"/billing/customers/{customer}/plan", headers=auth("billing"), json={})).status_code == 200
    _t, _k, envelope = envelope_for(ev.UsageRecorded(customer_id=customer, meter="reload_meter",
                                                     quantity=Decimal("2"), time=NOW - timedelta(minutes=1)))
    parsed = parse(topic("usage-recorded"), Incoming(envelope.to_bytes()))
    billing.catalog.meters, billing.catalog.customers = {}, set()  # as at start-up
    first_load = asyncio.create_task(billing.catalog.reload(pool))  # the start-up job takes the lock
    await eventually(lambda: billing.catalog._lock.locked() or first_load.done(), interval=0)
    assert not first_load.done(), "the first load finished before the event was validated: nothing was tested"
    assert await billing.validate_usage([parsed]) == [None]
    await first_load


async def test_poison_on_the_incarnation_topic_is_dead_lettered_by_every_service_and_markers_still_apply(
        isolated):
    """SPEC §8: a bad message on `rekisteri-broker-incarnation` is kept in each service's
    `dead_letters` with its reason and relayed to the topic's `-dlq`, like on every other
    topic (it was only logged); a good marker after it is still observed."""
    poison = {"malformed": b'{"id": "incarnation", "type": [unclosed',
              "wrong_type": json.dumps({"id": str(uuid.uuid4()), "type": "usage-recorded", "data": {}}).encode()}
    producer = AIOKafkaProducer(bootstrap_servers=isolated.bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        for value in poison.values():
            await producer.send_and_wait(INCARNATION, value, key=b"poison")
        marker = uuid.uuid4()
        _t, key, good = envelope_for(ev.BrokerIncarnation(incarnation=marker, started_at=NOW, previous_drained=True),
                                     source="launcher")
        await producer.send_and_wait(INCARNATION, good.to_bytes(), key=key.encode())
    finally:
        await producer.stop()
    for service in CATALOGUE[INCARNATION].consumers:
        pool = isolated.runtime(service).pool

        async def kept(pool: Any = pool, service: str = service) -> dict[bytes, str]:
            rows = await pool.fetch("SELECT original, reason FROM dead_letters WHERE consumer = $1 AND topic = $2",
                                    f"{service}.{INCARNATION}", INCARNATION)
            reasons = {bytes(r["original"]): r["reason"] for r in rows}
            return set(poison.values()) <= set(reasons) and reasons

        reasons = await eventually(kept)
        assert all(reasons[value] for value in poison.values()), reasons
        assert await eventually(lambda pool=pool: pool.fetchval(
            "SELECT incarnation = $1 FROM broker_state", marker)), f"{service} did not observe the marker after the poison"

    def relayed(records: list[dict[str, Any]]) -> bool:  # opened from their seals (issue 15, H1)
        consumers = {r["headers"].get("x-consumer") for r in records if r["value"] in poison.values()}
        return {f"{s}.{INCARNATION}" for s in CATALOGUE[INCARNATION].consumers} <= consumers

    await read_topic(isolated.bootstrap, dead_letter_topic(INCARNATION), until=relayed,
                     keystore_database_url=isolated.database_url)
