"""The `rekisteri` command: run the register and operate it (SPEC §7)."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from typing import Sequence

from shared.settings import SERVICE_NAMES, PlatformSettings


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

    module = _service_module(args.service)
    settings = module.SETTINGS()
    configure_logging(args.service, settings.log_level)
    app = module.build_app(settings)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=15, lifespan="on")
    uvicorn.Server(config).run()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a token; with the public development secret only when asked (`--dev`)."""
    from shared.settings import InsecureConfiguration
    from shared.web.auth import mint_token

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


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.messaging.kafka import describe_topics, ensure_topics

    settings = PlatformSettings()
    bootstrap, options = settings.kafka_bootstrap_servers, settings.kafka_client_options()
    if args.action == "create":
        created = asyncio.run(ensure_topics(bootstrap, replication=args.replication, client_options=options))
        print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    described = asyncio.run(describe_topics(bootstrap, client_options=options))
    from shared.messaging.topics import CATALOGUE

    for name, partitions in sorted(described.items()):
        spec = CATALOGUE.get(name)
        note = f"key={spec.key} personal={'yes' if spec.personal_data else 'no'}" if spec else "dead letters"
        print(f"{name:<40} partitions={partitions:<3} {note}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run() -> None:
        from shared.db import create_pool, migrate

        for name in args.services or SERVICE_NAMES:
            module = _service_module(name)
            settings = PlatformSettings()
            pool = await create_pool(settings.database_url, name)
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


def _run_operation(coro_factory) -> int:  # noqa: ANN001 - an async callable taking (conn)
    """Connect to PostgreSQL, run one operation; an operator's mistake is exit code 2."""
    from shared.ops.operations import OperationError

    async def run() -> int:
        import asyncpg

        conn = await asyncpg.connect(PlatformSettings().database_url)
        try:
            return await coro_factory(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except OperationError as exc:
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
        async def listing(conn) -> int:  # noqa: ANN001
            letters = await ops.list_dead_letters(conn, args.service, include_replayed=args.all)
            for d in letters:
                state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M:%S}" if d.replayed_at else "open"
                print(f"{d.ref:<24} {d.topic:<32} {d.received_at:%Y-%m-%d %H:%M:%S} {state:<28}"
                      f" consumer={d.consumer} event_id={d.event_id or '-'} reason={d.reason}")
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            return 0

        return _run_operation(listing)

    if bool(args.ids) == bool(args.all):
        print("error: give dead letter ids (SERVICE:ID ...) or --all: exactly one of them", file=sys.stderr)
        return 2

    async def replaying(conn) -> int:  # noqa: ANN001
        producer = ops.producer_for(PlatformSettings())
        await producer.start()
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

    return _run_operation(replaying)


def cmd_outbox(args: argparse.Namespace) -> int:
    from shared.ops import operations as ops

    async def backlog(conn) -> int:  # noqa: ANN001
        print(f"{'service':<24} {'unpublished':>11} {'oldest':>10} {'open dead letters':>18}")
        for b in await ops.outbox_backlog(conn, args.service):
            print(f"{b.service:<24} {b.unpublished:>11} {_age(b.oldest_age_s):>10} {b.open_dead_letters:>18}")
        return 0

    return _run_operation(backlog)


def cmd_lag(args: argparse.Namespace) -> int:
    from shared.messaging.lag import consumer_lag
    from shared.ops.operations import Progress

    settings = PlatformSettings()
    lags = asyncio.run(consumer_lag(settings.kafka_bootstrap_servers, args.group or None,
                                    progress=lambda total: Progress("groups", total),
                                    client_options=settings.kafka_client_options()))
    print(f"{'group':<36} {'topic':<36} {'partitions':>10} {'lag':>10}")
    for lag in lags:
        print(f"{lag.group:<36} {lag.topic:<36} {lag.partitions:>10} {lag.lag:>10}")
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
        producer = ops.producer_for(PlatformSettings())
        await producer.start()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rekisteri", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the embedded stack: PostgreSQL, broker, topics, all four services").set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="run one service (for containers)")
    serve.add_argument("service", choices=SERVICE_NAMES)
    serve.set_defaults(func=cmd_serve)
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
    dlq_list.set_defaults(func=cmd_dlq)
    dlq_replay = dlq_sub.add_parser("replay", help="republish dead letters' original bytes to their topics")
    dlq_replay.add_argument("ids", nargs="*", metavar="SERVICE:ID", help="as `dlq list` prints them (ID alone with --service)")
    dlq_replay.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    dlq_replay.add_argument("--service", help="only this service schema's dead letters")
    dlq_replay.set_defaults(func=cmd_dlq)
    outbox = sub.add_parser("outbox", help="outbox backlog per service: unpublished events, oldest age")
    outbox.add_argument("--service", help="one service schema (default: all)")
    outbox.set_defaults(func=cmd_outbox)
    lag = sub.add_parser("lag", help="consumer lag per group and topic (committed vs end offsets)")
    lag.add_argument("--group", action="append", help="a consumer group, e.g. billing or billing.usage-recorded (repeatable)")
    lag.set_defaults(func=cmd_lag)
    publish = sub.add_parser("publish", help="validate and publish events of a catalogued topic from JSON")
    publish.add_argument("topic", help="a catalogued topic, e.g. usage-recorded")
    publish.add_argument("--file", "-f", required=True,
                         help="JSON file ('-' for stdin): payload(s) or full envelope(s); an object, an array or JSON lines")
    publish.add_argument("--source", default="rekisteri-cli", help="the envelope's source for payloads (default: rekisteri-cli)")
    publish.set_defaults(func=cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
