-- Erasure finds a person's copies in the outbox by message key and by the person named in
-- the data (Outbox.erase_copies), and a dead letter's sealed copy by its subject (the
-- dead-letter trigger of 0006): without these, each was a scan of the whole outbox, which
-- keeps every relayed row for OUTBOX_RETENTION_DAYS.
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key);
CREATE INDEX IF NOT EXISTS outbox_person ON outbox ((envelope -> 'data' ->> 'person_id'));
