"""Price plans and rating (SPEC §6): tiers, components, the price of a quantity, rounding
to the cent (half up) and the VAT rate of a day. No I/O.

Money is Decimal throughout and rounded once per invoice line."""
from __future__ import annotations

import math
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.billing.domain.usage import ZERO

CENT = Decimal("0.01")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tier(_Model):
    up_to: Decimal | None = Field(default=None, gt=0)  # None: no upper bound (the last tier)
    unit_price: Decimal = Field(default=ZERO, ge=0)
    flat_fee: Decimal = Field(default=ZERO, ge=0)


class Component(_Model):
    """How one meter is priced."""

    meter: str = Field(min_length=1, max_length=100)
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_price: Decimal | None = Field(default=None, ge=0)
    tiers: list[Tier] = Field(default_factory=list)
    package_size: Decimal | None = Field(default=None, gt=0)
    package_price: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Component:
        if self.model == "per_unit" and self.unit_price is None:
            raise ValueError("per_unit needs unit_price")
        if self.model == "package" and (self.package_size is None or self.package_price is None):
            raise ValueError("package needs package_size and package_price")
        if self.model in ("graduated", "volume"):
            if not self.tiers:
                raise ValueError(f"{self.model} needs tiers")
            bounds = [t.up_to for t in self.tiers]
            if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
                raise ValueError("only the last tier is unbounded (up_to null)")
            if any(a >= b for a, b in zip(bounds[:-2], bounds[1:-1])):  # type: ignore[operator]
                raise ValueError("tiers must ascend")
        return self


class PricePlan(_Model):
    """A customer's plan: flat monthly fee, priced meters, minimum commitment (EUR, net)."""

    flat_fee: Decimal = Field(default=ZERO, ge=0)
    minimum_commitment: Decimal = Field(default=ZERO, ge=0)
    components: list[Component] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_component_per_meter(self) -> PricePlan:
        names = [c.meter for c in self.components]
        if len(names) != len(set(names)):
            raise ValueError("one component per meter")
        return self

    def component(self, meter: str) -> Component | None:
        return next((c for c in self.components if c.meter == meter), None)


def price(component: Component, quantity: Decimal) -> Decimal:
    """Unrounded net price of `quantity`; zero quantity costs nothing."""
    if quantity <= 0:
        return ZERO
    if component.model == "per_unit":
        return quantity * component.unit_price  # type: ignore[operator]
    if component.model == "package":
        packages = math.ceil(quantity / component.package_size)  # type: ignore[operator]
        return Decimal(packages) * component.package_price  # type: ignore[operator]
    if component.model == "volume":
        tier = next(t for t in component.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * tier.unit_price + tier.flat_fee
    total, lower = ZERO, ZERO
    for tier in component.tiers:  # graduated: each tier prices the units within it
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += (upper - lower) * tier.unit_price + tier.flat_fee
        lower = upper if tier.up_to is None else tier.up_to
    return total


def round_money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def vat_rate_on(rates: Mapping[date, Decimal], day: date) -> Decimal:
    """The Finnish VAT rate (percent) in force on `day`."""
    applicable = [d for d in rates if d <= day]
    if not applicable:
        raise ValueError("no VAT rate configured for the date")
    return rates[max(applicable)]
