"""Plan versions on the real broker and database (issue 18, SPEC §6): each usage event is
rated by the version in force at its time; a closed period's versions cannot change."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

from tests.helpers import ExternalSystem
from tests.integration.test_billing import BILLING, billing, invoice_of, until_billed, usage  # noqa: F401

OLD = {"flat_fee": "31", "minimum_commitment": "62",
       "components": [{"meter": "bt_calls", "model": "per_unit", "unit_price": "0.1234"}]}
NEW = {"flat_fee": "62", "components": [{"meter": "bt_calls", "model": "per_unit", "unit_price": "0.3333"}]}
MID_MARCH = "2023-03-15T00:00:00+02:00"  # 14 + 17 of March's 31 days


async def test_price_change_on_the_15th_prices_each_half_by_its_own_version(infra, billing):
    """SPEC §6 (issue 18): 100 calls before the 15th at 0.1234, 40 after at 0.3333, flat fee and
    minimum prorated by days; hand-computed to the cent; DST (26 March) inside the month."""
    customer = uuid.uuid4()
    assert (await billing.http.put(f"/billing/customers/{customer}/plan", json=OLD, headers=BILLING)).status_code == 200
    changed = await billing.http.put(f"/billing/customers/{customer}/plan", json=NEW, headers=BILLING,
                                     params={"effective_from": MID_MARCH})
    assert changed.status_code == 200, changed.text
    async with ExternalSystem(infra.bootstrap) as platform:
        for day, quantity in ((1, "50"), (14, "50"), (15, "20"), (31, "20")):
            # 14 March 21:30 UTC is 23:30 in Helsinki: still the old version
            await platform.publish(usage(customer, quantity, datetime(2023, 3, day, 21 if day == 14 else 9, 30,
                                                                     tzinfo=UTC)))
    await until_billed(billing, customer, "2023-03", D(140))
    assert (await billing.http.post("/billing/periods/2023-03/close", headers=BILLING)).status_code == 200
    invoice = await invoice_of(billing, customer, "2023-03")
    assert [(line["kind"], line["days"], line["amount"]) for line in invoice["lines"]] == [
        ("flat_fee", "14/31", "14.00"), ("usage", "14/31", "12.34"), ("minimum_commitment", "14/31", "15.66"),
        ("flat_fee", "17/31", "34.00"), ("usage", "17/31", "13.33")]
    # 14.00 + 12.34 + 15.66 + 34.00 + 13.33 = 89.33; VAT 24 % (March 2023) = 21.4392 → 21.44
    assert (invoice["net"], invoice["vat"], invoice["gross"]) == ("89.33", "21.44", "110.77")

    history = (await billing.http.get(f"/billing/customers/{customer}/plan/versions", headers=BILLING)).json()
    assert [(v["effective_from"], v["effective_until"]) for v in history["versions"]] == [
        ("1970-01-01T00:00:00+00:00", "2023-03-14T22:00:00+00:00"), ("2023-03-14T22:00:00+00:00", None)]
    # the versions that priced the closed March cannot change, nor can one be added inside it
    for params in ({"effective_from": MID_MARCH}, {"effective_from": "2023-03-20T00:00:00+02:00"}):
        refused = await billing.http.put(f"/billing/customers/{customer}/plan", json=OLD, headers=BILLING,
                                         params=params)
        assert refused.status_code == 409 and "effective_from" in refused.json()["fields"], refused.text
    later = await billing.http.put(f"/billing/customers/{customer}/plan", json=OLD, headers=BILLING,
                                   params={"effective_from": "2023-04-01T00:00:00+03:00"})
    assert later.status_code == 200, later.text


async def test_a_version_that_would_split_recorded_usage_is_refused(infra, billing):
    """Issue 18: usage already kept under the earlier version cannot be re-split (its times
    are aggregated away), so a version starting before recorded usage is a 409."""
    customer = uuid.uuid4()
    assert (await billing.http.put(f"/billing/customers/{customer}/plan", json=OLD, headers=BILLING)).status_code == 200
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "5", datetime(2023, 6, 20, tzinfo=UTC)))
    await until_billed(billing, customer, "2023-06", D(5))
    refused = await billing.http.put(f"/billing/customers/{customer}/plan", json=NEW, headers=BILLING,
                                     params={"effective_from": "2023-06-10T00:00:00+03:00"})
    assert refused.status_code == 409, refused.text
    after = await billing.http.put(f"/billing/customers/{customer}/plan", json=NEW, headers=BILLING,
                                   params={"effective_from": "2023-06-25T00:00:00+03:00"})
    assert after.status_code == 200
    async with ExternalSystem(infra.bootstrap) as platform:
        await platform.publish(usage(customer, "7", datetime(2023, 6, 28, tzinfo=UTC)))
    await until_billed(billing, customer, "2023-06", D(12))
    rows = await billing.runtime.pool.fetch(
        "SELECT version_from, quantity_sum FROM usage_aggregates WHERE customer_id = $1 ORDER BY version_from",
        customer)
    assert [r["quantity_sum"] for r in rows] == [D(5), D(7)]
    assert rows[1]["version_from"] == datetime(2023, 6, 24, 21, tzinfo=UTC)
