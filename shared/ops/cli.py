"""The `rekisteri` command: run the register and operate it (SPEC §7).

Exit codes: 0 done, 2 a usage or operator error (argparse's too), 3 infrastructure the
command needs (PostgreSQL, Kafka) did not answer: one line on stderr naming it.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from typing import Any, AsyncIterator, Iterator, Sequence

from shared.ops.endpoints import Stack, StackUnknown, resolve_stack
from shared.settings import SERVICE_NAMES, PlatformSettings

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class UsageError(Exception):
    """The operator asked for something the command cannot do (exit code 2)."""


class Unreachable(Exception):
    """PostgreSQL or Kafka did not answer (exit code 3); says which and where."""

    def __init__(self, what: str, where: str, cause: BaseException) -> None:
        name = type(cause).__name__
        reason = (str(cause).strip().splitlines() or [""])[0].removeprefix(f"{name}: ")
        super().__init__(f"cannot reach {what} at {where}: {name}{': ' + reason if reason else ''}")


def _stack(*needs: str) -> Stack:
    """The stack the command talks to. Each part is named on stderr once it answered (stdout
    stays for data and --json); one that does not answer is the error line instead."""
    stack = resolve_stack()
    stack.require(*needs)
    return stack


@asynccontextmanager
async def _kafka(stack: Stack) -> AsyncIterator[None]:
    """Kafka errors (a broker that does not answer above all) as one line, exit code 3."""
    from aiokafka.errors import KafkaError

    try:
        yield
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise Unreachable("Kafka", stack.where("kafka"), exc) from exc
    print(stack.describe("kafka"), file=sys.stderr)


async def _start_producer(stack: Stack, producer) -> None:  # noqa: ANN001 - an AIOKafkaProducer
    async with _kafka(stack):
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a failed start leaves no client open
            raise


async def _postgres(stack: Stack):  # noqa: ANN202 - an asyncpg connection
    import asyncpg

    try:
        conn = await asyncpg.connect(stack.settings.database_url, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable("PostgreSQL", stack.where("postgres"), exc) from exc
    print(stack.describe("postgres"), file=sys.stderr)
    return conn


def _print_json(rows: Any) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False, default=_json_value) + "\n")


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _service_module(name: str):  # noqa: ANN202 - a module
    return importlib.import_module(f"services.{name}.app")


def cmd_up(_args: argparse.Namespace) -> int:
    from shared.ops.launcher import run_up
    from shared.logging import configure_logging

    configure_logging("launcher", PlatformSettings().log_level)
    return asyncio.run(run_up())


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.logging import configure_logging

    from shared import tracing

    module = _service_module(args.service)
    settings = module.SETTINGS()
    configure_logging(args.service, settings.log_level)
    app = module.build_app(settings)
    if tracing.configure(args.service):  # only with OTEL_EXPORTER_OTLP_ENDPOINT set
        tracing.instrument_app(app)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=15, lifespan="on")
    uvicorn.Server(config).run()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a token; with the public development secret only when asked (`--dev`)."""
    from shared.settings import InsecureConfiguration
    from shared.web.auth import mint_token

    if args.role == "subject" and not args.person_id:
        raise UsageError("--role subject needs --person-id (the person the token belongs to)")
    settings = PlatformSettings()
    if not args.dev:
        try:
            settings.model_copy(update={"rekisteri_dev_stack": False}).check_secrets()
        except InsecureConfiguration as exc:
            print(f"rekisteri token: {exc}; pass --dev to mint for the embedded development stack", file=sys.stderr)
            return 2
    longest = settings.token_max_lifetime_s(args.role)
    ttl = args.ttl or min(settings.rekisteri_token_ttl_s, longest)
    if ttl > longest:
        print(f"rekisteri token: --ttl {ttl} is longer than a {args.role} token may live ({longest} s)",
              file=sys.stderr)
        return 2
    print(mint_token(settings.rekisteri_token_secret, user=args.user, role=args.role, person_id=args.person_id,
                     ttl_s=ttl, audience=args.audience or list(SERVICE_NAMES),
                     issuer=settings.rekisteri_token_issuer))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Command-signing keys (SPEC §9): a keyring of every service's seed, or its public half."""
    import json
    from pathlib import Path

    from shared.messaging.signing import generate_keyring, public_keys

    path = Path(args.file)
    if args.action == "generate":
        if path.exists() and args.keep:
            print(f"kept the existing keyring {path}")
            return 0
        if path.exists():
            print(f"{path} exists: pass --keep to leave it, or remove it to make new keys", file=sys.stderr)
            return 2
        generate_keyring(path)
        print(f"wrote {path} (keep it secret; services read it from REKISTERI_SIGNING_KEYRING)")
        return 0
    print(json.dumps(public_keys(path)))  # for REKISTERI_SIGNING_PUBLIC_KEYS
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.messaging.kafka import describe_topics, ensure_topics
    from shared.messaging.topics import CATALOGUE

    stack = _stack("kafka")
    bootstrap = stack.settings.kafka_bootstrap_servers

    async def run() -> tuple[list[str], dict[str, int]]:
        async with _kafka(stack):
            options = stack.settings.kafka_client_options()  # TLS/SASL
            created = (await ensure_topics(bootstrap, replication=args.replication, client_options=options)
                       if args.action == "create" else [])
            return created, await describe_topics(bootstrap, client_options=options)

    created, described = asyncio.run(run())
    if args.json:
        _print_json([{"name": name, "partitions": partitions, "created": name in created,
                      "dead_letters": name not in CATALOGUE,
                      "key": CATALOGUE[name].key if name in CATALOGUE else None,
                      "personal_data": CATALOGUE[name].personal_data if name in CATALOGUE else None}
                     for name, partitions in sorted(described.items())])
        return 0
    if args.action == "create":
        print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    for name, partitions in sorted(described.items()):
        spec = CATALOGUE.get(name)
        note = f"key={spec.key} personal={'yes' if spec.personal_data else 'no'}" if spec else "dead letters"
        print(f"{name:<40} partitions={partitions:<3} {note}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    stack = _stack("postgres")

    async def run() -> None:
        from shared.db import create_pool, migrate

        await (await _postgres(stack)).close()  # unreachable: one line, exit code 3
        for name in args.services or SERVICE_NAMES:
            module = _service_module(name)
            pool = await create_pool(stack.settings.database_url, name)
            try:
                applied = await migrate(pool, name, module.MIGRATIONS)
                print(f"{name}: {len(applied)} migration(s) applied")
            finally:
                await pool.close()

    asyncio.run(run())
    return 0


def asyncapi_text(service: str | None = None) -> str:
    from shared.messaging.asyncapi import build_asyncapi

    return json.dumps(build_asyncapi(service), indent=2, ensure_ascii=False) + "\n"


def cmd_asyncapi(args: argparse.Namespace) -> int:
    text = asyncapi_text(args.service)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _run_operation(stack: Stack, coro_factory) -> int:  # noqa: ANN001 - an async callable taking (conn)
    """Connect to PostgreSQL, run one operation; an operator's mistake is exit code 2."""
    from shared.ops.operations import OperationError

    async def run() -> int:
        conn = await _postgres(stack)
        try:
            return await coro_factory(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except OperationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def cmd_dlq(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    if args.action == "list":
        stack = _stack("postgres")

        async def listing(conn) -> int:  # noqa: ANN001
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

    async def replaying(conn) -> int:  # noqa: ANN001
        producer = ops.producer_for(stack.settings)
        await _start_producer(stack, producer)
        try:
            replayed = await ops.replay_dead_letters(
                conn, producer, refs=args.ids or None, service=args.service,
                progress=lambda total: ops.Progress("replaying", total))
        finally:
            await producer.stop()
        for d in replayed:
            print(f"replayed {d.ref} to {d.topic}")
        print(f"{len(replayed)} dead letter(s) replayed", file=sys.stderr)
        return 0

    return _run_operation(stack, replaying)


def cmd_outbox(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    stack = _stack("postgres")

    async def backlog(conn) -> int:  # noqa: ANN001
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

    async def run():  # noqa: ANN202 - list[Lag]
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


JSON_HELP = "print a JSON array on stdout instead of the table"


def build_parser() -> argparse.ArgumentParser:
    from shared.metrics import build_commit, build_version

    parser = argparse.ArgumentParser(prog="rekisteri", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rekisteri {build_version()} (commit {build_commit()})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the embedded stack: PostgreSQL, broker, topics, all four services").set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="run one service (for containers)")
    serve.add_argument("service", choices=SERVICE_NAMES)
    serve.set_defaults(func=cmd_serve)
    keys = sub.add_parser("keys", help="command-signing keys: generate a keyring, or print its public keys")
    keys.add_argument("action", choices=["generate", "public"])
    keys.add_argument("--file", required=True, help="the keyring file (JSON of service → Ed25519 seed)")
    keys.add_argument("--keep", action="store_true", help="with generate: leave an existing keyring as it is")
    keys.set_defaults(func=cmd_keys)
    token = sub.add_parser("token", help="mint a signed bearer token")
    token.add_argument("--role", required=True,
                       choices=["register_owner", "register_user", "marketing", "billing", "subject", "service"])
    token.add_argument("--user", required=True, help="who the token is for (a staff id or system name)")
    token.add_argument("--person-id", help="for --role subject: the person the token belongs to")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (staff at most 12 h, service 30 days)")
    token.add_argument("--audience", action="append", choices=SERVICE_NAMES,
                       help="a service the token is for (repeat; default: all four)")
    token.add_argument("--dev", action="store_true",
                       help="allow the public development secret (the embedded stack of `rekisteri up`)")
    token.set_defaults(func=cmd_token)
    topics = sub.add_parser("topics", help="create or describe the topic set")
    topics.add_argument("action", choices=["create", "describe"])
    topics.add_argument("--replication", type=int, default=1)
    topics.add_argument("--json", action="store_true", help=JSON_HELP)
    topics.set_defaults(func=cmd_topics)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICE_NAMES)} (default: all)")
    mig.set_defaults(func=cmd_migrate)
    api = sub.add_parser("asyncapi", help="print the AsyncAPI document (whole register or one service)")
    api.add_argument("service", nargs="?", choices=SERVICE_NAMES)
    api.add_argument("--output", "-o", help="write it to this file (docs/asyncapi.json) instead of stdout")
    api.set_defaults(func=cmd_asyncapi)
    dlq = sub.add_parser("dlq", help="dead-lettered messages: list them with reasons, replay them once fixed")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_sub.add_parser("list", help="dead letters not yet replayed (--all: replayed ones too)")
    dlq_list.add_argument("--service", help="one service schema (default: all)")
    dlq_list.add_argument("--all", action="store_true", help="include replayed dead letters")
    dlq_list.add_argument("--json", action="store_true", help=JSON_HELP)
    dlq_list.set_defaults(func=cmd_dlq)
    dlq_replay = dlq_sub.add_parser("replay", help="republish dead letters' original bytes to their topics")
    dlq_replay.add_argument("ids", nargs="*", metavar="SERVICE:ID", help="as `dlq list` prints them (ID alone with --service)")
    dlq_replay.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    dlq_replay.add_argument("--service", help="only this service schema's dead letters")
    dlq_replay.set_defaults(func=cmd_dlq)
    outbox = sub.add_parser("outbox", help="outbox backlog per service: unpublished events, oldest age")
    outbox.add_argument("--service", help="one service schema (default: all)")
    outbox.add_argument("--set-aside", action="store_true",
                        help="list rows the relay set aside (too large for the broker); they are kept until re-published")
    outbox.add_argument("--republish", nargs="+", metavar="SERVICE:SEQ",
                        help="hand set-aside rows back to the relay once their cause is fixed")
    outbox.add_argument("--json", action="store_true", help=JSON_HELP)
    outbox.set_defaults(func=cmd_outbox)
    lag = sub.add_parser("lag", help="consumer lag per group and topic (committed vs end offsets)")
    lag.add_argument("--group", action="append", help="a consumer group, e.g. billing or billing.usage-recorded (repeatable)")
    lag.add_argument("--json", action="store_true", help=JSON_HELP + " (with the lag of each partition)")
    lag.set_defaults(func=cmd_lag)
    suppression = sub.add_parser("suppression", help="the suppression lists' keyed digests (SPEC §9)")
    suppression_sub = suppression.add_subparsers(dest="action", required=True)
    rekey = suppression_sub.add_parser(
        "rekey", help="re-key every suppression list onto REKISTERI_SUPPRESSION_KEY (old keys in"
                      " REKISTERI_SUPPRESSION_OLD_KEYS); every ban stays effective throughout")
    rekey.add_argument("--grace", type=float, default=3.0,
                       help="seconds to wait after announcing the new key chains (> SUPPRESSION_CHAIN_TTL_S)")
    rekey.add_argument("--batch", type=int, default=1000, help="digests moved per transaction")
    rekey.set_defaults(func=cmd_suppression)
    publish = sub.add_parser("publish", help="validate and publish events of a catalogued topic from JSON")
    publish.add_argument("topic", help="a catalogued topic, e.g. usage-recorded")
    publish.add_argument("--file", "-f", required=True,
                         help="JSON file ('-' for stdin): payload(s) or full envelope(s); an object, an array or JSON lines")
    publish.add_argument("--source", default="rekisteri-cli", help="the envelope's source for payloads (default: rekisteri-cli)")
    publish.set_defaults(func=cmd_publish)
    _add_staff_parser(sub)
    return parser


def _add_staff_parser(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """`rekisteri staff add|disable|list`: the portal's staff accounts (services/portal/staff_cli.py)."""
    from services.portal.staff_cli import add_parser

    add_parser(sub)


@contextmanager
def _quiet_client_logs(command: str) -> Iterator[None]:
    """The Kafka client logs each failed connection and asyncio each client left open after
    one: an operator gets the one error line instead (`serve` and `up` keep every log)."""
    import logging

    loggers = [] if command in {"serve", "up"} else [logging.getLogger(n) for n in ("aiokafka", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a usage error exits 2 here
    try:
        with _quiet_client_logs(args.command):
            return int(args.func(args) or 0)
    except (UsageError, StackUnknown) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
