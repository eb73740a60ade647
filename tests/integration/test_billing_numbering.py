"""Gapless invoice numbers on real PostgreSQL (issue 18, SPEC §6): concurrent closes, credit
notes and rolled-back issues, and a close killed with SIGKILL, leave each series 1..n with
no gap and no duplicate.

These tests use a database of their own: a period closes for every customer with a plan,
and the shared test database has the other tests' customers.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from services.billing import domain, issuing, numbering, storage
from services.billing.app import MIGRATIONS, SETTINGS
from services.billing.handlers import Billing
from shared.db import create_pool, migrate
from shared.messaging.envelope import utcnow
from tests.conftest import service_test_settings
from tests.helpers import eventually
from tests.infra import create_database

PLAN = domain.PricePlan(flat_fee=D("1.00"))
BUYER = {"name": "Asiakas Oy", "business_id": "7654321-2", "vat_number": "FI76543212",
         "address": {"street": "Asiakkaantie 5", "postal_code": "02100", "city": "Espoo", "country_code": "FI"},
         "einvoice_address": "003776543212", "einvoice_operator": "E204503", "payment_terms_days": 14,
         "language": "fi", "contact_person_id": None}
# Every month from January 2013 (the first configured VAT rate) to October 2026, minus the
# first six, closed before the concurrent run so credit notes have invoices to correct.
PERIODS = [f"{y}-{m:02d}" for y in range(2013, 2027) for m in range(1, 13)][:166]


async def _isolated_billing(infra, pool_size: int = 20):
    url = await create_database(infra)
    settings = SETTINGS(**service_test_settings(infra, url, billing_auto_close=False))
    # a thousand transactions queue for the pool: they wait as long as it takes, not DB_ACQUIRE_TIMEOUT_S
    pool = await create_pool(url, settings.schema, max_size=pool_size, acquire_timeout_s=600)
    await migrate(pool, settings.schema, MIGRATIONS)
    return url, settings, pool, Billing(SimpleNamespace(pool=pool, settings=settings, name="billing"))


async def _numbers(pool, series: str) -> list[int]:
    return await storage.series_numbers(pool, series)


async def _issue_then_roll_back(billing: Billing, invoice: dict) -> None:
    """Take a credit-note number in a transaction that then fails: the number must come back."""
    class Abort(Exception):
        pass
    try:
        async with billing.runtime.pool.acquire() as conn, conn.transaction():
            await storage.get_invoice(conn, invoice["invoice_id"], lock=True)  # as a credit note does
            draft = dict(invoice_id=uuid.uuid4(), customer_id=invoice["customer_id"], period=invoice["period"],
                         kind="credit_note", credits=invoice["invoice_id"], reason="aborted", net=D("-0.01"),
                         vat_rate=invoice["vat_rate"], vat=D("0.00"), gross=D("-0.01"),
                         lines=[{"kind": "credit", "description": "aborted", "amount": "-0.01"}],
                         issued_at=utcnow(), parties=invoice["parties"])
            await issuing.issue(conn, [draft], billing.runtime.settings, "billing")
            raise Abort
    except Abort:
        pass


async def test_a_thousand_concurrent_issues_leave_both_series_gapless(infra):
    """Issue 18: 160 period closes, 790 credit notes and 50 issues that roll back after taking
    a number, all at once (1,000 concurrent issuing transactions, 20 connections): invoices and
    credit notes are each numbered 1..n without a gap or a duplicate."""
    _, settings, pool, billing = await _isolated_billing(infra)
    try:
        customers = [uuid.uuid4() for _ in range(3)]
        for customer in customers:
            await storage.save_plan(pool, customer, PLAN)
        await storage.save_customer(pool, customers[0], BUYER, None)
        for period in PERIODS[:6]:
            await billing.close_period(period)
        invoices = [dict(r) for r in await pool.fetch("SELECT * FROM invoices ORDER BY number")]
        assert len(invoices) == 18
        started = time.perf_counter()
        results = await asyncio.gather(
            *(billing.close_period(p) for p in PERIODS[6:]),
            *(billing.issue_credit_note(invoices[i % 18]["invoice_id"], "correction", D("0.01")) for i in range(790)),
            *(_issue_then_roll_back(billing, invoices[i % 18]) for i in range(50)),
            return_exceptions=True)
        elapsed = time.perf_counter() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], failures[:3]
        seller = settings.billing_seller.business_id
        invoice_numbers = await _numbers(pool, numbering.series_of(seller, "invoice", "own"))
        note_numbers = await _numbers(pool, numbering.series_of(seller, "credit_note", "own"))
        assert len(invoice_numbers) == 166 * 3 and len(note_numbers) == 790
        assert numbering.number_gaps(invoice_numbers) == ([], [])
        assert numbering.number_gaps(note_numbers) == ([], [])
        assert invoice_numbers == list(range(1, 499)) and note_numbers == list(range(1, 791))
        counters = {r["series"]: r["next_number"] for r in await pool.fetch("SELECT * FROM invoice_series")}
        assert counters == {numbering.series_of(seller, "invoice", "own"): 499,
                            numbering.series_of(seller, "credit_note", "own"): 791}
        print(f"1000 concurrent issuing transactions in {elapsed:.1f} s")
    finally:
        await pool.close()


def test_credit_notes_can_share_the_invoice_series():
    assert numbering.series_of("1234567-1", "credit_note", "same") == numbering.series_of("1234567-1", "invoice", "own")
    assert numbering.number_gaps([1, 2, 2, 4]) == ([3], [2])


_CLOSE_IN_A_CHILD = """
import asyncio, sys
from types import SimpleNamespace
from services.billing.app import SETTINGS
from services.billing.handlers import Billing
from shared.db import create_pool

async def main():
    settings = SETTINGS(database_url=sys.argv[1], billing_auto_close=False)
    pool = await create_pool(sys.argv[1], settings.schema)
    print("closing", flush=True)
    await Billing(SimpleNamespace(pool=pool, settings=settings, name="billing")).close_period(sys.argv[2])

asyncio.run(main())
"""


async def test_a_close_killed_mid_transaction_leaves_no_gap(infra):
    """Issue 18, SPEC §8: SIGKILL while a close holds the counter (numbers taken, not yet
    committed): nothing of it stays, and the next close continues the series without a gap."""
    url, settings, pool, billing = await _isolated_billing(infra, pool_size=4)
    try:
        customers = [uuid.uuid4() for _ in range(1500)]
        async with pool.acquire() as conn:
            await conn.executemany("INSERT INTO plan_versions (customer_id, effective_from, plan) VALUES ($1, $2, $3)",
                                   [(c, domain.BEGINNING, PLAN.model_dump(mode="json")) for c in customers])
            await conn.executemany("INSERT INTO billing_customers (customer_id, details) VALUES ($1, $2)",
                                   [(c, BUYER) for c in customers])
        await billing.close_period("2020-01")  # numbers 1..1500 committed
        child = subprocess.Popen([sys.executable, "-c", _CLOSE_IN_A_CHILD, url, "2020-02"],
                                 stdout=subprocess.PIPE, cwd=os.getcwd())
        try:
            assert child.stdout.readline().strip() == b"closing"

            async def holds_the_counter() -> bool:  # the child took the numbers and has not committed
                return await pool.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relname = 'invoice_series' AND l.pid <> pg_backend_pid()") > 0
            await eventually(holds_the_counter, timeout=30, interval=0.01)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()

        async def rolled_back() -> bool:
            return await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND application_name = 'rekisteri-billing' AND pid <> pg_backend_pid()"
                                       " AND state <> 'idle'") == 0
        await eventually(rolled_back, timeout=30)
        assert await storage.period_status(pool, "2020-02") != "closed"
        series = numbering.series_of(settings.billing_seller.business_id, "invoice", "own")
        assert await _numbers(pool, series) == list(range(1, 1501))
        await billing.close_period("2020-02")
        numbers = await _numbers(pool, series)
        assert numbers == list(range(1, 3001)) and numbering.number_gaps(numbers) == ([], [])
    finally:
        await pool.close()


pytestmark = pytest.mark.timeout(300)
