"""The one retry policy (issue 21): `through_outages` waits out the infrastructure and nothing else."""
from __future__ import annotations

import asyncpg
import pytest

from shared.messaging import retry
from shared.messaging.retry import Backoff, through_outages


@pytest.fixture(autouse=True)
def instant_backoff(monkeypatch):
    monkeypatch.setattr(retry, "OUTAGE", Backoff(first_s=0.0, max_s=0.0))


def failing(errors: list[BaseException], result: str = "done"):
    calls = []

    async def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result
    return call, calls


async def test_an_outage_is_waited_out_until_the_call_succeeds():
    call, calls = failing([OSError("refused"), asyncpg.CannotConnectNowError("starting")])
    assert await through_outages(call, wait=True, waiting="w") == "done"
    assert len(calls) == 3


async def test_an_http_caller_gets_the_first_outage_at_once():
    call, calls = failing([OSError("refused")])
    with pytest.raises(OSError):
        await through_outages(call, wait=False, waiting="w")
    assert len(calls) == 1


async def test_a_failure_of_the_call_itself_is_not_retried():
    call, calls = failing([ValueError("bad handler")])
    with pytest.raises(ValueError):
        await through_outages(call, wait=True, waiting="w")
    assert len(calls) == 1
