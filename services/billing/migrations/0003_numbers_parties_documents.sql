-- Gapless invoice numbers, buyers, e-invoice documents (issue 18, SPEC §6).

-- One counter row per series: taken FOR UPDATE in the transaction that writes the invoice,
-- so a number exists exactly when its invoice does (a sequence would leave gaps on rollback).
CREATE TABLE IF NOT EXISTS invoice_series (
    series      text PRIMARY KEY,
    next_number bigint NOT NULL DEFAULT 1 CHECK (next_number >= 1)
);

ALTER TABLE invoices ADD COLUMN IF NOT EXISTS series text;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS number bigint;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS invoice_number text;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS reference text;      -- national reference (viitenumero)
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS rf_reference text;   -- ISO 11649
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS due_date date;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS parties jsonb;       -- seller and buyer as at issue
CREATE UNIQUE INDEX IF NOT EXISTS invoices_series_number ON invoices (series, number) WHERE number IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS invoices_reference ON invoices (reference) WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS invoices_page ON invoices (issued_at, invoice_id);

-- Buyers: the organisations invoiced, with what an e-invoice and a Finnish invoice need.
CREATE TABLE IF NOT EXISTS billing_customers (
    customer_id       uuid PRIMARY KEY,
    details           jsonb NOT NULL,
    contact_person_id uuid,   -- a person reference, if the buyer has one in the register
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS billing_customers_person ON billing_customers (contact_person_id);

-- Finvoice 3.0 and Peppol BIS Billing 3.0 documents, written at issue and never changed.
CREATE TABLE IF NOT EXISTS invoice_documents (
    invoice_id uuid NOT NULL REFERENCES invoices (invoice_id),
    format     text NOT NULL CHECK (format IN ('finvoice', 'ubl')),
    content    text NOT NULL,
    sha256     text NOT NULL,
    PRIMARY KEY (invoice_id, format)
);
