"""The privacy kernel's cost per contact point (SPEC §9): normalising and digesting a campaign
list of 100,000 emails and phones (CPU time, so other work on the machine skews it less), with
one suppression key and during a rotation (three key chains), and the worst inputs the old
email pattern choked on (it took 24 s on one of them); and what crypto-shredding adds per
event (issue 15): a contact-registered built sealed and parsed opened, against the same in
plain, with the data key cached (as a running service has it)."""
from __future__ import annotations

import argparse
import json
import os
import time

import asyncio
import uuid

from shared.messaging.parsing import Incoming
from shared.messaging.events import ContactRegistered
from shared.messaging.outbox import build_envelope, build_sealed_envelope
from shared.messaging.parsing import parse, parse_opening
from shared.messaging.topics import CATALOGUE
from shared.privacy import CachingKeyStore, LocalMasterKey, MasterKeys, MemoryKeyStore
from shared.privacy.contact_points import email_or_none, phone_or_none
from shared.privacy.digests import ContactPointDigests, SuppressionKey, SuppressionKeyring


def cpu_s(work) -> float:  # a callable
    started = time.process_time()
    work()
    return time.process_time() - started


async def _event_cpu_us(events: int) -> dict[str, float]:
    """CPU per event: build (+ seal) and parse (+ open), sealed and plain; keys cached."""
    keys = CachingKeyStore(MemoryKeyStore(MasterKeys(LocalMasterKey(os.urandom(32)))))
    spec, people = CATALOGUE["contact-registered"], [uuid.uuid4() for _ in range(100)]
    payloads = [ContactRegistered(person_id=people[i % 100], emails=[f"p{i}@example.fi"], phones=["+358401234567"],
                                  source="staff", lifecycle_state="active") for i in range(events)]
    for person in people:
        await keys.get_or_create_data_key(person)
    started = time.process_time()
    plain = [build_envelope(p, source="contacts")[2].to_bytes() for p in payloads]
    [parse(spec, Incoming(raw)) for raw in plain]
    plain_s = time.process_time() - started
    started = time.process_time()
    sealed = [(await build_sealed_envelope(p, keys, source="contacts"))[2].to_bytes() for p in payloads]
    [await parse_opening(spec, Incoming(raw), keys) for raw in sealed]
    sealed_s = time.process_time() - started
    return {"event_plain_build_and_parse_cpu_us": round(plain_s / events * 1e6, 1),
            "event_sealed_build_and_parse_cpu_us": round(sealed_s / events * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    emails = [f"person{i}.{i % 9973:04d}@example{i % 97}.fi" for i in range(args.points)]
    phones = [f"040 {i % 1000:03d} {i % 10000:04d}" for i in range(args.points)]
    old, new = os.urandom(32), os.urandom(32)
    one = SuppressionKeyring(new)
    rotating = SuppressionKeyring(new, [old])
    chains = [SuppressionKey(old).id, rotating.extended(SuppressionKey(old).id), rotating.current_chain]
    single, three = ContactPointDigests(one, [one.current_chain]), ContactPointDigests(rotating, chains)
    worst = ["a@" + "." * 32000 + "@", "x" * (1 << 20), "a@" + "." * 240 + "@", "+358" + "0" * 1_000_000]
    print(json.dumps({
        "benchmark": "privacy", "contact_points": args.points,
        "normalise_email_cpu_us": round(cpu_s(lambda: [email_or_none(e) for e in emails]) / args.points * 1e6, 2),
        "normalise_phone_cpu_us": round(cpu_s(lambda: [phone_or_none(p) for p in phones]) / args.points * 1e6, 2),
        "digest_emails_one_key_cpu_us": round(cpu_s(lambda: single.emails(emails)) / args.points * 1e6, 2),
        "digest_emails_three_chains_cpu_us": round(cpu_s(lambda: three.emails(emails)) / args.points * 1e6, 2),
        "worst_inputs_refused_cpu_ms": round(cpu_s(lambda: [email_or_none(v) or phone_or_none(v) for v in worst]) * 1e3, 3),
        **asyncio.run(_event_cpu_us(min(args.points, 20_000))),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
