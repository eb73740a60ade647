"""Operating it: dead letters, the outbox, consumer lag, publishing by hand, suppression-key rotation."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from shared.ops.cli.common import (
    EXIT_USAGE,
    _age,
    _kafka,
    _print_json,
    _run_operation,
    _stack,
    _start_producer,
)
from shared.settings import SERVICE_NAMES

if TYPE_CHECKING:
    import asyncpg

    from shared.messaging.lag import Lag


def cmd_suppression(args: argparse.Namespace) -> int:
    """`rekisteri suppression rekey`: move every suppression list onto REKISTERI_SUPPRESSION_KEY
    (the old keys in REKISTERI_SUPPRESSION_OLD_KEYS), keeping each ban effective (SPEC §9)."""
    from shared.privacy.keys import KeyConfigurationError
    from shared.privacy.rekey import rekey
    from shared.settings import ServiceSettings

    async def run() -> int:
        import asyncpg

        settings = ServiceSettings()
        keyring = settings.suppression_keyring()
        targets = []
        try:
            for name in SERVICE_NAMES:
                lists = getattr(importlib.import_module(f"services.{name}.storage"), "SUPPRESSION_LISTS", None)
                if lists is None:
                    continue
                conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": lists.schema})
                targets.append((conn, lists))
                if not await conn.fetchval("SELECT to_regclass('suppression_key_chain') IS NOT NULL"):
                    print(f"{lists.schema}: not migrated yet, nothing to re-key", file=sys.stderr)
                    targets.pop()
                    await conn.close()
            reports = await rekey(targets, keyring, grace_s=args.grace, batch=args.batch,
                                  progress=lambda line: print(line, file=sys.stderr))
            for report in reports:
                print(json.dumps({"schema": report.schema, "chains_moved": report.chains_moved,
                                  "digests_moved": report.digests_moved, "legacy_left": report.legacy_left}))
            return 0
        finally:
            for conn, _ in targets:
                await conn.close()

    try:
        return asyncio.run(run())
    except (KeyConfigurationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_dlq(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    if args.action == "list":
        stack = _stack("postgres")

        async def listing(conn: asyncpg.Connection) -> int:
            letters = await ops.list_dead_letters(conn, args.service, include_replayed=args.all)
            if args.json:
                _print_json([{"ref": d.ref, **asdict(d)} for d in letters])
                return 0
            for d in letters:
                state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M:%S}" if d.replayed_at else "open"
                print(f"{d.ref:<24} {d.topic:<32} {d.received_at:%Y-%m-%d %H:%M:%S} {state:<28}"
                      f" consumer={d.consumer} event_id={d.event_id or '-'} reason={d.reason}")
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            return 0

        return _run_operation(stack, listing)

    if bool(args.ids) == bool(args.all):
        print("error: give dead letter ids (SERVICE:ID ...) or --all: exactly one of them", file=sys.stderr)
        return 2
    stack = _stack("postgres", "kafka")

    async def replaying(conn: asyncpg.Connection) -> int:
        producer = ops.producer_for(stack.settings)
        await _start_producer(stack, producer)
        try:
            outcome = await ops.replay_dead_letters(
                conn, producer, refs=args.ids or None, service=args.service,
                progress=lambda total: ops.Progress("replaying", total))
        finally:
            await producer.stop()
        for d in outcome.replayed:
            print(f"replayed {d.ref} to {d.topic}")
        for d in outcome.failed_again:
            print(f"replayed {d.ref} to {d.topic}: dead-lettered again at once, still open (see `rekisteri dlq list`)")
        for refused in outcome.refused:
            print(f"refused {refused.letter.ref}: {refused.reason}", file=sys.stderr)
        print(f"{len(outcome.replayed)} dead letter(s) replayed, {len(outcome.failed_again)} failed again,"
              f" {len(outcome.refused)} refused", file=sys.stderr)
        # Naming an erased person's dead letter is an operator error; --all passes them by.
        return EXIT_USAGE if outcome.refused and args.ids else 0

    return _run_operation(stack, replaying)


def cmd_outbox(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    stack = _stack("postgres")

    async def backlog(conn: asyncpg.Connection) -> int:
        if args.republish:
            count = await ops.republish_set_aside(conn, args.republish, args.service)
            print(f"{count} set-aside row(s) handed back to the relay")
            return 0
        if args.set_aside:
            aside = await ops.set_aside_rows(conn, args.service)
            if args.json:
                _print_json([asdict(r) for r in aside])
                return 0
            for r in aside:
                print(f"{r.service}:{r.seq:<10} {r.topic:<32} {r.created_at:%Y-%m-%d %H:%M}  {r.reason}")
            print(f"{len(aside)} set-aside row(s)")
            return 0
        rows = await ops.outbox_backlog(conn, args.service)
        if args.json:
            _print_json([asdict(b) for b in rows])
            return 0
        print(f"{'service':<24} {'unpublished':>11} {'oldest':>10} {'open dead letters':>18}")
        for b in rows:
            print(f"{b.service:<24} {b.unpublished:>11} {_age(b.oldest_age_s):>10} {b.open_dead_letters:>18}")
        return 0

    return _run_operation(stack, backlog)


def cmd_lag(args: argparse.Namespace) -> int:
    from shared.messaging.lag import consumer_lag
    from shared.ops.operations import Progress

    stack = _stack("kafka")

    async def run() -> list[Lag]:
        async with _kafka(stack):
            return await consumer_lag(stack.settings.kafka_bootstrap_servers, args.group or None,
                                      progress=lambda total: Progress("groups", total),
                                      client_options=stack.settings.kafka_client_options())

    lags = asyncio.run(run())
    if args.json:
        _print_json([{**asdict(lag), "by_partition": {str(p): n for p, n in sorted(lag.by_partition.items())}}
                     for lag in lags])
        return 0
    print(f"{'group':<36} {'topic':<36} {'partitions':>10} {'lag':>10}")
    for lag in lags:
        print(f"{lag.group:<36} {lag.topic:<36} {lag.partitions:>10} {lag.lag:>10}")
    if any(lag.approximate for lag in lags):
        print("lag is approximate on the embedded broker (end offsets are each partition's last batch, SPEC §8);"
              " a committed offset past the end counts as 0")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2

    async def publish() -> int:
        # Validate before connecting: a bad file fails fast, even without a broker.
        built = ops.build_publications(args.topic, ops.load_documents(text), source=args.source)
        stack = _stack("kafka")
        producer = ops.producer_for(stack.settings)
        await _start_producer(stack, producer)
        try:
            sent = await ops.publish_envelopes(producer, args.topic, built,
                                               progress=lambda total: ops.Progress("publishing", total))
        finally:
            await producer.stop()
        for envelope in sent:
            print(f"published {envelope.type} id={envelope.id} subject={envelope.subject}")
        return 0

    try:
        return asyncio.run(publish())
    except ops.OperationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
