"""The command line itself: every subcommand's arguments, and `main`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from shared.ops.cli.backing import add_parsers as add_backup_parsers
from shared.ops.cli.common import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Unreachable,
    UsageError,
    _quiet_client_logs,
)
from shared.ops.cli.operating import (
    cmd_dlq,
    cmd_lag,
    cmd_outbox,
    cmd_publish,
    cmd_suppression,
)
from shared.ops.cli.running import (
    cmd_asyncapi,
    cmd_keys,
    cmd_migrate,
    cmd_serve,
    cmd_token,
    cmd_topics,
    cmd_up,
)
from shared.ops.endpoints import StackUnknown
from shared.settings import SERVED_NAMES, SERVICE_NAMES

JSON_HELP = "print a JSON array on stdout instead of the table"


def build_parser() -> argparse.ArgumentParser:
    from shared.metrics import build_commit, build_version

    parser = argparse.ArgumentParser(prog="rekisteri", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rekisteri {build_version()} (commit {build_commit()})")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_running_parsers(sub)
    _add_operating_parsers(sub)
    add_backup_parsers(sub)
    _add_staff_parser(sub)
    return parser


def _add_running_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Running the register and its set-up: up, serve, keys, token, topics, migrate, asyncapi."""
    sub.add_parser("up", help="run the embedded stack: PostgreSQL, broker, topics, all four services").set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="run one service or the portal (for containers)")
    serve.add_argument("service", choices=SERVED_NAMES)
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


def _add_operating_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Day-to-day operation: dead letters, the outbox, lag, suppression keys, publishing."""
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


def _add_staff_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # argparse's own type
    """`rekisteri staff add|disable|list`: the portal's staff accounts (services/portal/staff_cli.py)."""
    from services.portal.staff_cli import add_parser

    add_parser(sub)


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
