-- Payments from the bank integration (issue 18): deduplicated by the bank's payment id,
-- matched to an invoice by its reference; one without a match stays unallocated.
CREATE TABLE IF NOT EXISTS payments (
    payment_id  text PRIMARY KEY,
    reference   text NOT NULL,
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    paid_on     date NOT NULL,
    invoice_id  uuid REFERENCES invoices (invoice_id),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payments_invoice ON payments (invoice_id);
CREATE INDEX IF NOT EXISTS invoices_rf_reference ON invoices (rf_reference) WHERE rf_reference IS NOT NULL;
