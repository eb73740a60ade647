"""Running the register: `up`, `serve`, `token`, `keys`, `topics`, `migrate`, `asyncapi`."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from shared.ops.cli.common import (
    UsageError,
    _kafka,
    _postgres,
    _print_json,
    _service_module,
    _stack,
)
from shared.settings import SERVICE_NAMES, PlatformSettings


def cmd_up(_args: argparse.Namespace) -> int:
    from shared.logging import configure_logging
    from shared.ops.launcher import run_up

    configure_logging("launcher", PlatformSettings().log_level)
    return asyncio.run(run_up())


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from shared import tracing
    from shared.logging import configure_logging

    module = _service_module(args.service)
    settings = module.SETTINGS()
    configure_logging(args.service, settings.log_level)
    app = module.build_app(settings)
    if tracing.configure(args.service):  # only with OTEL_EXPORTER_OTLP_ENDPOINT set
        tracing.instrument_app(app)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.port, log_config=None,
                            proxy_headers=True, forwarded_allow_ips=settings.http_forwarded_allow_ips,
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
