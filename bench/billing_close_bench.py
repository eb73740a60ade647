"""Billing close benchmark (issue 18): close a month for N customers (default 10,000), each
with a plan, buyer details and usage on two meters: price every customer, take gapless
numbers, write the invoices, their Finvoice 3.0 and Peppol UBL documents and the
`invoice-issued` outbox events in one transaction. Prints JSON. Target < 60 s.

Run: .venv/bin/python -m bench.billing_close_bench [--customers 10000]
"""
from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from bench.common import run_on_embedded_stack
from services.billing import domain, storage
from services.billing.app import MIGRATIONS, SETTINGS
from services.billing.handlers import Billing
from shared.db import create_pool, migrate
from tests.infra import create_database

PERIOD = "2025-06"
METERS = [domain.Meter("cpu_seconds", domain.Aggregation.sum, ("region",)),
          domain.Meter("api_calls", domain.Aggregation.count)]
PLAN = domain.PricePlan(flat_fee=Decimal("10"), minimum_commitment=Decimal("25"), components=[
    domain.Component(meter="cpu_seconds", model="graduated", tiers=[
        domain.Tier(up_to=Decimal(1000), unit_price=Decimal("0.01")), domain.Tier(unit_price=Decimal("0.005"))]),
    domain.Component(meter="api_calls", model="package", package_size=Decimal(1000), package_price=Decimal("1"))])
NEW_PLAN = PLAN.model_copy(update={"flat_fee": Decimal("12")})
BUYER = {"name": "Asiakas Oy", "business_id": "7654321-2", "vat_number": "FI76543212",
         "address": {"street": "Asiakkaantie 5", "postal_code": "02100", "city": "Espoo", "country_code": "FI"},
         "einvoice_address": "003776543212", "einvoice_operator": "E204503", "payment_terms_days": 14,
         "language": "fi", "contact_person_id": None}


async def run(infra, customers_n: int) -> dict:
    url = await create_database(infra)
    settings = SETTINGS(database_url=url, kafka_bootstrap_servers=infra.bootstrap, billing_auto_close=False,
                        log_level="WARNING")
    pool = await create_pool(url, settings.schema, max_size=4)
    await migrate(pool, settings.schema, MIGRATIONS)
    rng = random.Random(18)
    customers = [uuid.uuid4() for _ in range(customers_n)]
    mid_month = datetime(2025, 6, 15, tzinfo=domain.HELSINKI)
    async with pool.acquire() as conn:
        for meter in METERS:
            await storage.save_meter(conn, meter)
        # every tenth customer changed plan on the 15th: its month splits in two
        versions = [(c, domain.BEGINNING, PLAN.model_dump(mode="json")) for c in customers]
        versions += [(c, mid_month, NEW_PLAN.model_dump(mode="json")) for c in customers[::10]]
        await conn.executemany("INSERT INTO plan_versions (customer_id, effective_from, plan) VALUES ($1, $2, $3)",
                               versions)
        await conn.executemany("INSERT INTO billing_customers (customer_id, details) VALUES ($1, $2)",
                               [(c, BUYER) for c in customers])
    starts = {c: (domain.BEGINNING, mid_month) if i % 10 == 0 else (domain.BEGINNING,)
              for i, c in enumerate(customers)}
    events = [domain.UsageEvent(c, None, meter.name, Decimal(rng.randint(1, 500_000)) / 100,
                                datetime(2025, 6, rng.randint(1, 30), 12, tzinfo=UTC), {"region": "fi"})
              for c in customers for meter in METERS for _ in range(2)]
    for at in range(0, len(events), 20_000):
        folded = domain.fold_usage(events[at:at + 20_000], {m.name: m for m in METERS}, starts)
        async with pool.acquire() as conn, conn.transaction():
            await storage.apply_folded_usage(conn, folded, await storage.lock_invoice_periods(conn, folded.periods))
    billing = Billing(SimpleNamespace(pool=pool, settings=settings, name="billing"))
    started, cpu_started = time.perf_counter(), time.process_time()
    result = await billing.close_period(PERIOD)
    close_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    documents = await pool.fetchval("SELECT count(*) FROM invoice_documents")
    numbers = await pool.fetch("SELECT number FROM invoices ORDER BY number")
    outbox = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'invoice-issued'")
    await pool.close()
    return {
        "billing_close_load_average_1m": os.getloadavg()[0],
        "billing_close_cpus": os.cpu_count(),
        "billing_close_customers": customers_n,
        "billing_close_invoices": result["issued"],
        "billing_close_documents": documents,
        "billing_close_outbox_events": outbox,
        "billing_close_numbers_gapless": [r["number"] for r in numbers] == list(range(1, len(numbers) + 1)),
        "billing_close_s": round(close_s, 2),
        "billing_close_process_cpu_s": round(cpu_s, 2),
        "billing_close_ms_per_invoice": round(close_s / max(result["issued"], 1) * 1000, 2),
        "billing_close_target_s": 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    run_on_embedded_stack("billing-close", lambda infra: run(infra, args.customers), indent=2)


if __name__ == "__main__":
    main()
