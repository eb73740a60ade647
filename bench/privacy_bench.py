"""The privacy kernel's cost per contact point (SPEC §9): normalising and digesting a campaign
list of 100,000 emails and phones (CPU time, so other work on the machine skews it less), with
one suppression key and during a rotation (three key chains), and the worst inputs the old
email pattern choked on (it took 24 s on one of them)."""
from __future__ import annotations

import argparse
import json
import os
import time

from shared.privacy.contact_points import email_or_none, phone_or_none
from shared.privacy.digests import ContactPointDigests, SuppressionKey, SuppressionKeyring


def cpu_s(work) -> float:  # noqa: ANN001 - a callable
    started = time.process_time()
    work()
    return time.process_time() - started


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
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
