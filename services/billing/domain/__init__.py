"""Billing rules as functions of values (P3, SPEC §6), no I/O: one module per idea.

- `periods`: calendar months in Europe/Helsinki;
- `usage`: validating usage events and folding them into aggregates;
- `pricing`: price plans, tiers, rounding, VAT rates;
- `invoices`: invoice lines over plan versions, and totals.

Callers use `domain.<name>`; this module names what each file holds."""
from services.billing.domain.periods import (  # noqa: F401
    BEGINNING, HELSINKI, invoice_target, next_period, period_due_for_close, period_has_ended,
    period_last_day, period_of, period_start,
)
from services.billing.domain.usage import (  # noqa: F401
    Aggregate, Aggregation, csv_cell, dimension_key, fold_usage, FoldedUsage, Meter, meter_quantity,
    usage_reasons, UsageEvent, validate_usage, version_in_force, ZERO,
)
from services.billing.domain.pricing import (  # noqa: F401
    CENT, Component, price, PricePlan, round_money, Tier, vat_rate_on,
)
from services.billing.domain.invoices import (  # noqa: F401
    invoice_lines, invoice_totals, MeterUsage, plan_in_force, PlanVersion, prorate, quantity_text,
    Segment, segments, version_change_conflict,
)
