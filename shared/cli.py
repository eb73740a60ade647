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
    from shared.launcher import run_up
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
    from shared.auth import mint_token

    settings = PlatformSettings()
    ttl = args.ttl or settings.rekisteri_token_ttl_s
    print(mint_token(settings.rekisteri_token_secret, user=args.user, role=args.role,
                     person_id=args.person_id, ttl_s=ttl))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.kafka import describe_topics, ensure_topics

    bootstrap = PlatformSettings().kafka_bootstrap_servers
    if args.action == "create":
        created = asyncio.run(ensure_topics(bootstrap, replication=args.replication))
        print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    described = asyncio.run(describe_topics(bootstrap))
    from shared.topics import CATALOGUE

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


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from shared.asyncapi import build_asyncapi

    print(json.dumps(build_asyncapi(args.service), indent=2, ensure_ascii=False))
    return 0


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
    token.add_argument("--ttl", type=int, help="lifetime in seconds")
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
    api.set_defaults(func=cmd_asyncapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
