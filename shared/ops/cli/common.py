"""What every `rekisteri` command shares: which stack it talks to, reaching PostgreSQL and Kafka with one-line errors (exit 3), JSON output."""
from __future__ import annotations

import asyncio
import importlib
import json
import sys
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator

from shared.ops.endpoints import Stack, resolve_stack

if TYPE_CHECKING:  # imported where used, to keep the CLI's start quick
    import asyncpg
    from aiokafka import AIOKafkaProducer

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3






JSON_HELP = "print a JSON array on stdout instead of the table"


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
    except (TimeoutError, KafkaError, OSError) as exc:
        raise Unreachable("Kafka", stack.where("kafka"), exc) from exc
    print(stack.describe("kafka"), file=sys.stderr)


async def _start_producer(stack: Stack, producer: AIOKafkaProducer) -> None:
    async with _kafka(stack):
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a failed start leaves no client open
            raise


async def _postgres(stack: Stack) -> asyncpg.Connection:
    import asyncpg

    try:
        conn = await asyncpg.connect(stack.settings.database_url, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable("PostgreSQL", stack.where("postgres"), exc) from exc
    print(stack.describe("postgres"), file=sys.stderr)
    return conn


def _print_json(rows: Any) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False, default=_json_value) + "\n")


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _service_module(name: str) -> ModuleType:
    return importlib.import_module(f"services.{name}.app")


def _run_operation(stack: Stack, coro_factory: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
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


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


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
