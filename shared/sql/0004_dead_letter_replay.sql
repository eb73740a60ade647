-- `rekisteri dlq replay` marks a dead letter replayed only after the broker acknowledged the
-- republished message (issue 20). While it waits, the row says a replay was asked for: a
-- consumer that fails on the replayed message at once reopens the row (with its new reason)
-- and the replay then leaves it open instead of marking it replayed.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replay_requested_at timestamptz;
-- The dead-letter prune (DEAD_LETTER_RETENTION_DAYS, issue 15) finds old rows by this.
CREATE INDEX IF NOT EXISTS dead_letters_received_at ON dead_letters (received_at);
