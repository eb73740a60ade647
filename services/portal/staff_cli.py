"""`rekisteri staff add|disable|list`: the operator's side of the portal's staff accounts."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from shared.passwords import Passwords
from services.portal import accounts
from services.portal.settings import PortalSettings
from shared.db import create_pool, migrate


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (at least 12 characters): ")
    if getpass.getpass("Again: ") != first:
        raise accounts.AccountError("password: the two entries differ")
    return first


async def _run(args: argparse.Namespace) -> int:
    from services.portal.app import MIGRATIONS

    settings = PortalSettings()
    pool = await create_pool(settings.database_url, settings.schema, min_size=1, max_size=2)
    try:
        await migrate(pool, settings.schema, MIGRATIONS)
        async with pool.acquire() as conn:
            if args.action == "add":
                passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                                               settings.argon2_parallelism)
                secret = await accounts.add_staff(conn, passwords, args.username, args.role, _password(args),
                                                  with_totp=args.totp)
                print(f"added {args.username} ({args.role})")
                if secret:
                    import pyotp

                    uri = pyotp.TOTP(secret).provisioning_uri(name=args.username, issuer_name="Rekisteri")
                    print(f"TOTP secret (add it to an authenticator app; shown once): {secret}")
                    print(f"TOTP URI: {uri}")
            elif args.action == "disable":
                await accounts.disable_staff(conn, args.username)
                print(f"disabled {args.username}; its sessions are ended")
            else:
                for row in await accounts.list_staff(conn):
                    state = f"disabled {row['disabled_at']:%Y-%m-%d}" if row["disabled_at"] else "enabled"
                    print(f"{row['username']:<32} {row['role']:<16} totp={'yes' if row['totp'] else 'no':<4} {state}")
    finally:
        await pool.close()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_parser(sub: argparse._SubParsersAction) -> None:  # argparse's own type
    staff = sub.add_parser("staff", help="portal staff accounts: add, disable, list")
    actions = staff.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a staff account (the password is asked for)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=accounts.STAFF_ROLES)
    add.add_argument("--totp", action="store_true", help="also require a one-time code (prints the secret once)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    disable = actions.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("username")
    actions.add_parser("list", help="list the accounts")
    staff.set_defaults(func=run)
