-- An event too large for the broker is set aside with a reason instead of stalling the relay.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failed_reason text;
