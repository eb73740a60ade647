-- Billing (P3, SPEC §6): meters, price plans, usage aggregates, periods, invoices.

-- What each meter measures and how its events aggregate.
CREATE TABLE IF NOT EXISTS meters (
    name              text PRIMARY KEY,
    aggregation       text NOT NULL CHECK (aggregation IN ('sum', 'count', 'max', 'unique_count', 'latest')),
    dimensions        text[] NOT NULL DEFAULT '{}',   -- the dimensions usage is kept per
    unique_dimension  text,                           -- what unique_count counts
    unit              text NOT NULL DEFAULT 'unit',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One current price plan per customer organisation; a customer without a plan is unknown.
CREATE TABLE IF NOT EXISTS price_plans (
    customer_id uuid PRIMARY KEY,
    plan        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Calendar months in Europe/Helsinki ('YYYY-MM'); the row lock orders ingestion and close.
CREATE TABLE IF NOT EXISTS billing_periods (
    period     text PRIMARY KEY,
    status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    closed_at  timestamptz
);

-- Usage aggregated per customer, meter, usage period, chosen dimensions and the period
-- whose invoice bills it (the usage period itself, or a later one for late events).
CREATE TABLE IF NOT EXISTS usage_aggregates (
    customer_id     uuid NOT NULL,
    meter           text NOT NULL,
    period          text NOT NULL,
    invoice_period  text NOT NULL,
    -- canonical JSON text (sorted keys): compared as text, cheaper than jsonb in the hot upsert
    dimensions      text NOT NULL DEFAULT '{}',
    quantity_sum    numeric NOT NULL DEFAULT 0,
    event_count     bigint NOT NULL DEFAULT 0,
    quantity_max    numeric,
    latest_quantity numeric,
    latest_at       timestamptz,
    PRIMARY KEY (customer_id, meter, period, invoice_period, dimensions)
);
CREATE INDEX IF NOT EXISTS usage_aggregates_invoice_period ON usage_aggregates (invoice_period);

-- Distinct values for unique_count meters; the first sighting decides the invoice period.
CREATE TABLE IF NOT EXISTS usage_unique_values (
    customer_id     uuid NOT NULL,
    meter           text NOT NULL,
    period          text NOT NULL,
    dimensions      text NOT NULL,
    value           text NOT NULL,
    invoice_period  text NOT NULL,
    PRIMARY KEY (customer_id, meter, period, dimensions, value)
);

-- Person references in usage (who used what), pseudonymised on erasure (R7).
CREATE TABLE IF NOT EXISTS usage_persons (
    customer_id  uuid NOT NULL,
    person_id    uuid NOT NULL,
    meter        text NOT NULL,
    period       text NOT NULL,
    event_count  bigint NOT NULL DEFAULT 0,
    quantity_sum numeric NOT NULL DEFAULT 0,
    pseudonymised boolean NOT NULL DEFAULT false,
    PRIMARY KEY (customer_id, person_id, meter, period)
);
CREATE INDEX IF NOT EXISTS usage_persons_person ON usage_persons (person_id);

-- Invoices and credit notes: accounting records, immutable once written.
CREATE TABLE IF NOT EXISTS invoices (
    invoice_id   uuid PRIMARY KEY,
    customer_id  uuid NOT NULL,
    period       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    credits      uuid REFERENCES invoices (invoice_id),
    reason       text,
    net          numeric(14, 2) NOT NULL,
    vat_rate     numeric(6, 3) NOT NULL,
    vat          numeric(14, 2) NOT NULL,
    gross        numeric(14, 2) NOT NULL,
    currency     text NOT NULL DEFAULT 'EUR',
    lines        jsonb NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now()
);
-- Exactly one invoice per customer and period (credit notes may be several).
CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_per_period ON invoices (customer_id, period) WHERE kind = 'invoice';
CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id, period);

CREATE OR REPLACE FUNCTION invoices_are_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'invoices are immutable: issue a credit note';
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS invoices_immutable ON invoices;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_are_immutable();
