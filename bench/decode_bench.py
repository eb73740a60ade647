"""Per-event decoding cost of a bulk topic (docs/adr/0001): FastStream's default batch decoder
(json-decode every body, then validate the dicts) against the path the consumer takes
(one pydantic pass over the raw bytes: envelope and payload together). CPU only, no broker.

    python -m bench.decode_bench [--events 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from shared.messaging.parsing import Incoming, _typed_envelope, parse
from shared.messaging.events import UsageRecorded
from shared.messaging.outbox import build_envelope
from shared.messaging.topics import topic


def bodies(count: int) -> list[bytes]:
    customer = uuid.uuid4()
    return [build_envelope(UsageRecorded(customer_id=customer, meter="cpu-hours", quantity=Decimal("1.25"),
                                         time=datetime.now(UTC), dimensions={"region": "fi-1"}),
                           source="cloud")[2].to_bytes() for _ in range(count)]


def per_event_us(run, raw: list[bytes], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(raw)
        best = min(best, time.perf_counter() - started)
    return best / len(raw) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    raw = bodies(args.events)
    spec = topic("usage-recorded")

    def faststream_decoder_then_validate(batch: list[bytes]) -> None:
        decoded = [json.loads(b) for b in batch]  # what FastStream's default decoder does per body
        model = _typed_envelope(spec.payload)
        for d in decoded:
            model.model_validate(d)  # the typed model still validates every decoded dict

    def one_pass(batch: list[bytes]) -> None:
        for b in batch:
            parse(spec, Incoming(b))

    def decoder_only(batch: list[bytes]) -> None:
        for b in batch:
            json.loads(b)

    print(json.dumps({
        "events": args.events,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "one_pass_us_per_event": round(per_event_us(one_pass, raw), 2),
        "faststream_decode_then_validate_us_per_event": round(per_event_us(faststream_decoder_then_validate, raw), 2),
        "faststream_decode_alone_us_per_event": round(per_event_us(decoder_only, raw), 2),
    }))


if __name__ == "__main__":
    main()
