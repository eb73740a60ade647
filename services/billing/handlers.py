"""Event and command handlers of the billing service (P3, SPEC §6).

Usage is applied in exactly one place, `apply_usage`, the batch handler of
`usage-recorded`: the platform's inbox dedupes by the envelope's (source, id) in the same
transaction, so the Kafka path and the HTTP batch path bill each event once.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from services.billing import domain, issuing, storage
from shared.messaging.handling import EventContext, UnitOfWork
from shared.messaging.parsing import Parsed
from shared.messaging.envelope import utcnow
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messaging.events import (AccessReportPart, AccessRequested, ContactErased, DispositionConfirmed,
                                     PaymentReceived)
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
INVOICE_NAMESPACE = uuid.UUID("6f1d3c52-8f0e-4d7a-9a57-0b1f3c2e9d41")


class Catalog:
    """Meters and known customers cached for validation; reloaded on a miss (at most
    twice a second) so a plan saved through another replica is seen soon."""

    def __init__(self) -> None:
        self.meters: dict[str, domain.Meter] = {}
        self.customers: set[uuid.UUID] = set()
        self.versions: dict[uuid.UUID, tuple] = {}  # customer -> ascending effective-from instants
        self.revision = 0
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def reload(self, pool: asyncpg.Pool) -> None:
        """Read meters and customers again; serialised, so the last reload sees the latest commit."""
        async with self._lock:
            await self._load(pool)

    async def reload_if_stale(self, pool: asyncpg.Pool) -> bool:
        async with self._lock:
            if time.monotonic() - self._loaded_at < 0.5:
                return False
            await self._load(pool)
            return True

    async def _load(self, pool: asyncpg.Pool) -> None:
        self.meters = await storage.load_meters(pool)
        self.revision, self.versions = await storage.load_version_starts(pool)
        self.customers = set(self.versions)
        self._loaded_at = time.monotonic()


class Billing:
    """The billing handlers bound to one runtime and its catalogue."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.catalog = Catalog()
        self.max_future = timedelta(seconds=runtime.settings.billing_max_future_s)  # type: ignore[attr-defined]

    # -- usage-recorded -------------------------------------------------------------------
    async def validate_usage(self, batch: list[Parsed]) -> list[str | None]:
        """Checks beyond the payload model, one reason (or None) per event; a reason
        dead-letters its event (SPEC §4)."""
        usage = [p.payload for p in batch]
        reasons = self._reasons(usage)
        if any(reasons):  # perhaps a meter or customer saved through another replica just now
            # Check again even when no reload was due: waiting for the lock may mean another task
            # (the start-up load) has just filled the catalogue.
            await self.catalog.reload_if_stale(self.runtime.pool)
            reasons = self._reasons(usage)
        return reasons

    def _reasons(self, usage: list[Any]) -> list[str | None]:
        return domain.usage_reasons(usage, self.catalog.meters, self.catalog.versions, datetime.now(UTC),
                                    self.max_future)

    def fold_usage(self, parsed: list[Parsed]) -> domain.FoldedUsage:
        """Fold a batch of usage into rows (P3): pure, done before the transaction."""
        return domain.fold_usage([p.payload for p in parsed], self.catalog.meters, self.catalog.versions,
                                 self.catalog.revision)

    async def apply_usage(self, uow: UnitOfWork, folded: domain.FoldedUsage) -> None:
        """Write folded usage. Usage of a closed period goes to the next open invoice as an
        adjustment (SPEC §6): the period locks decide which, in this transaction. If plan
        versions changed since the fold, fold again with the versions now committed."""
        if await uow.store.plan_revision_for_usage() != folded.revision:
            revision, versions = await uow.store.load_version_starts()
            folded = domain.fold_usage(folded.events, self.catalog.meters, versions, revision)
            self.catalog.versions, self.catalog.revision, self.catalog.customers = versions, revision, set(versions)
        targets = await uow.store.lock_invoice_periods(folded.periods)
        await uow.store.apply_folded_usage(folded, targets)

    # -- contact-erased ---------------------------------------------------------------------
    async def on_contact_erased(self, ctx: EventContext[ContactErased]) -> None:
        """R7: pseudonymise the person's references in usage; amounts and invoices stay."""
        count = await ctx.store.pseudonymise_person(ctx.payload.person_id)
        count += await ctx.store.pseudonymise_contact_person(ctx.payload.person_id)
        await ctx.outbox.erase_copies([ctx.payload.person_id], naming_digests=ctx.payload.naming)
        await ctx.outbox.add(DispositionConfirmed(command_id=ctx.payload.command_id, person_id=ctx.payload.person_id,
                                               service="billing", action="erase", confirmed_at=utcnow()))
        log.info("person_pseudonymised", person_id=str(ctx.payload.person_id), rows=count)

    # -- payment-received ---------------------------------------------------------------------
    async def on_payment_received(self, ctx: EventContext[PaymentReceived]) -> None:
        """Issue 18: record the payment (once per payment id) against its invoice."""
        if not await ctx.store.apply_payment(ctx.payload):
            log.info("payment_duplicate", event_id=str(ctx.envelope.id))

    # -- access-requested -------------------------------------------------------------------
    async def on_access_requested(self, ctx: EventContext[AccessRequested]) -> None:
        """R12: billing's slice of an access report: the person's recorded usage (P3)."""
        rows = await ctx.store.person_usage(ctx.payload.person_id) if ctx.payload.person_id else []
        items = [{"purpose": "usage_billing", "customer_id": str(r["customer_id"]), "meter": r["meter"],
                  "period": r["period"], "events": r["event_count"],
                  "quantity": domain.quantity_text(r["quantity_sum"])} for r in rows]
        paid = await ctx.store.person_payments(ctx.payload.person_id) if ctx.payload.person_id else []
        items += [{"purpose": "payment_data", "customer_id": str(r["customer_id"]), "invoice_number": r["invoice_number"],
                   "payment_id": r["payment_id"], "amount": str(r["amount"]), "paid_on": r["paid_on"].isoformat()}
                  for r in paid]
        await ctx.outbox.add(AccessReportPart(request_id=ctx.payload.request_id, service="billing",
                                           person_id=ctx.payload.person_id, items=items))

    # -- plan versions ------------------------------------------------------------------------
    async def put_plan_version(self, customer_id: uuid.UUID, plan: domain.PricePlan,
                               effective_from: datetime | None) -> dict[str, Any]:
        """Add or change a plan version (SPEC §6). Without `effective_from`: a customer's
        first version is in force from the start, a later change from now (the same plan as
        the one in force is a no-op). 409 when it would re-price a period already invoiced
        or split usage already recorded under the version in force before it."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await storage.bump_plan_revision(conn)  # serialises with usage batches and other changes
            versions = await storage.plan_versions(conn, customer_id)
            now = utcnow()
            if effective_from is None:
                if versions and domain.plan_in_force(versions, now) == plan:
                    return {"customer_id": str(customer_id), "effective_from":
                            max(v.effective_from for v in versions if v.effective_from <= now).isoformat(),
                            "plan": plan.model_dump(mode="json")}
                effective_from = now if versions else domain.BEGINNING
            reason = domain.version_change_conflict(effective_from, await storage.last_invoiced_period(conn, customer_id))
            if reason:
                raise Conflict(reason, fields={"effective_from": "in or before an invoiced period"})
            if effective_from not in {v.effective_from for v in versions} and await storage.usage_recorded_across(
                    conn, customer_id, effective_from):
                raise Conflict("effective_from: usage after it is already recorded under the earlier version",
                               fields={"effective_from": "usage already recorded after it"})
            await storage.upsert_plan_version(conn, customer_id, effective_from, plan)
        await self.catalog.reload(self.runtime.pool)
        return {"customer_id": str(customer_id), "effective_from": effective_from.isoformat(),
                "plan": plan.model_dump(mode="json")}

    # -- closing a period -----------------------------------------------------------------------
    async def close_period(self, period: str) -> dict[str, Any]:
        """Issue one invoice per customer for `period` and close it (SPEC §6). Idempotent:
        the period row lock serialises closes, the unique index backs it up."""
        if not domain.period_has_ended(period, datetime.now(UTC)):
            raise Conflict("period: cannot close a period that has not ended", fields={"period": "not ended"})
        try:
            vat_percent = domain.vat_rate_on(self.runtime.settings.billing_vat_rates,  # type: ignore[attr-defined]
                                             domain.period_last_day(period))
        except ValueError:  # before any configured rate: bad input, not a server error (SPEC §7)
            raise InvalidInput("period: no VAT rate is configured for this period",
                               fields={"period": "no VAT rate in force"}) from None
        issued = 0
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            if await storage.lock_period_for_close(conn, period) == "closed":
                return {"period": period, "status": "closed", "issued": 0}
            meters = await storage.load_meters(conn)
            plans = await storage.all_plan_versions(conn)
            rows, uniques = await storage.usage_for_invoice(conn, period)
            usage: dict[uuid.UUID, dict[tuple, domain.MeterUsage]] = defaultdict(dict)
            for r in rows:
                key = (r["meter"], r["period"], r["version_from"])
                item = usage[r["customer_id"]].get(key)
                if item is None:
                    item = usage[r["customer_id"]][key] = domain.MeterUsage(
                        meters[r["meter"]], r["period"], [], version_from=r["version_from"])
                item.rows.append(r)
            for u in uniques:
                item = usage[u["customer_id"]].get((u["meter"], u["period"], u["version_from"]))
                if item is not None:
                    item.unique_values.append((u["value"], u["invoice_period"]))
            issued_at = utcnow()
            already = await storage.invoiced_customers(conn, period)
            drafts = []
            for customer_id in sorted(set(plans) | set(usage), key=str):
                if customer_id in already:
                    continue
                versions = plans.get(customer_id) or [domain.PlanVersion(domain.BEGINNING, domain.PricePlan())]
                lines = domain.invoice_lines(versions, list(usage.get(customer_id, {}).values()), period)
                net, vat, gross = domain.invoice_totals(lines, vat_percent)
                drafts.append(dict(invoice_id=uuid.uuid5(INVOICE_NAMESPACE, f"{customer_id}:{period}"),
                                   customer_id=customer_id, period=period, kind="invoice", net=net,
                                   vat_rate=vat_percent, vat=vat, gross=gross, lines=lines, issued_at=issued_at))
            await issuing.issue(conn, drafts, self.runtime.settings, self.runtime.name,
                                buyers=await storage.all_customers(conn))
            issued = len(drafts)
            await storage.mark_closed(conn, period)
        log.info("period_closed", period=period, issued=issued)
        return {"period": period, "status": "closed", "issued": issued}

    async def issue_credit_note(self, invoice_id: uuid.UUID, reason: str, net: Decimal | None) -> dict[str, Any]:
        """Correct an immutable invoice with a credit note (SPEC §6); never credits more than it billed."""
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            original = await storage.get_invoice(conn, invoice_id, lock=True)
            if original is None or original["kind"] != "invoice":
                raise NotFound("invoice not found")
            remaining = original["net"] - await storage.credited_net(conn, invoice_id)
            amount = remaining if net is None else domain.round_money(net)
            if amount <= 0 or amount > remaining:
                raise Conflict("net: exceeds what is left to credit on the invoice", fields={"net": "exceeds remaining"})
            vat = domain.round_money(amount * original["vat_rate"] / 100)
            note = dict(invoice_id=uuid.uuid4(), customer_id=original["customer_id"], period=original["period"],
                        kind="credit_note", credits=invoice_id, reason=reason, net=-amount,
                        vat_rate=original["vat_rate"], vat=-vat, gross=-(amount + vat),
                        lines=[{"kind": "credit", "description": reason, "amount": str(-amount)}],
                        issued_at=utcnow(), parties=original["parties"])
            await issuing.issue(conn, [note], self.runtime.settings, self.runtime.name,
                                credits_numbers={note["invoice_id"]: original["invoice_number"]})
        return note

    # -- scheduled close ---------------------------------------------------------------------------
    async def scheduled_close(self, runtime: ServiceRuntime) -> None:
        """Close last month once it has ended and the grace for late events has passed."""
        settings = runtime.settings
        while not runtime.stopping.is_set():
            grace = timedelta(hours=settings.billing_close_grace_hours)  # type: ignore[attr-defined]
            due = domain.period_due_for_close(datetime.now(UTC), grace)
            if due is not None and await storage.period_status(runtime.pool, due) != "closed":
                await self.close_period(due)
            try:
                await asyncio.wait_for(runtime.stopping.wait(),
                                       timeout=settings.billing_close_check_interval_s)  # type: ignore[attr-defined]
            except TimeoutError:
                pass


def validate_period(period: str) -> str:
    if len(period) != 7 or period[4] != "-" or not (period[:4] + period[5:]).isdigit() or not 1 <= int(period[5:]) <= 12:
        raise InvalidInput("period: must be YYYY-MM", fields={"period": "must be YYYY-MM"})
    return period


async def _load_catalog(runtime: ServiceRuntime, billing: Billing) -> None:
    await billing.catalog.reload(runtime.pool)


def register(runtime: ServiceRuntime) -> Billing:
    billing = Billing(runtime)
    runtime.subscribe_batch("usage-recorded", billing.apply_usage, prepare=billing.fold_usage,
                            validate=billing.validate_usage,
                            max_records=runtime.settings.billing_batch_max_records)  # type: ignore[attr-defined]
    runtime.subscribe("contact-erased", billing.on_contact_erased)
    runtime.subscribe("access-requested", billing.on_access_requested)
    runtime.subscribe("payment-received", billing.on_payment_received)
    runtime.add_job("load-catalog", lambda rt: _load_catalog(rt, billing))
    if runtime.settings.billing_auto_close:  # type: ignore[attr-defined]
        runtime.add_job("scheduled-close", billing.scheduled_close)
    return billing
