-- Envelope ids are UUIDs (SPEC §4). The inbox keeps them as uuid (16 bytes, compared as bytes)
-- and its source in the "C" collation: its key is checked for every consumed event, and bulk
-- ingestion inserts thousands a batch.
ALTER TABLE inbox
    ALTER COLUMN event_id TYPE uuid USING event_id::uuid,
    ALTER COLUMN source TYPE text COLLATE "C";
