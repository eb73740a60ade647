"""Backing up and restoring the register, erasures re-applied (issue 15 part 4, SPEC §9)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.ops.cli.common import _run_operation, _stack


def cmd_backup(args: argparse.Namespace) -> int:
    from shared.ops import backup
    from shared.ops import operations as ops

    stack = _stack("postgres")

    async def run(conn: Any) -> int:
        info = await backup.take_backup(stack.settings.database_url, Path(args.file),
                                        progress=lambda total: ops.Progress("tables dumped", total))
        print(json.dumps({"file": args.file, "taken_at": info.taken_at.isoformat(), "schemas": info.schemas,
                          "tables": info.tables}))
        return 0

    return _run_operation(stack, run)


def cmd_restore(args: argparse.Namespace) -> int:
    from shared.ops import backup
    from shared.ops import operations as ops

    stack = _stack("postgres")

    async def run(conn: Any) -> int:
        await conn.close()  # the restore counts the sessions on the database: not this one
        report = await backup.restore_backup(
            stack.settings.database_url, Path(args.file),
            progress=lambda total: ops.Progress("restoring", total),
            log=lambda line: print(line, file=sys.stderr))
        print(json.dumps({"file": args.file, "taken_at": report.taken_at.isoformat(), "erasures": report.erasures,
                          "erased_since_backup": report.erased_since_backup,
                          "restored_persons_erased_again": report.restored_persons,
                          "keys_destroyed": report.keys_destroyed}))
        return 0

    return _run_operation(stack, run)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser("backup", help="pg_dump every schema but the erasure ledger to FILE (a tar)")
    backup.add_argument("file", help="the backup file to write")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore", help="replace the register's schemas with a backup's, then re-apply every erasure in the"
                        " erasure ledger; the services must be stopped")
    restore.add_argument("file", help="a file `rekisteri backup` wrote")
    restore.set_defaults(func=cmd_restore)
