-- Self-service tokens contacts has revoked (issue 16 finding 7): a subject token older than
-- `min_version`, or any once the account is disabled, is refused here as at contacts.
-- Ids and counters only; the row goes with the person's erasure.
CREATE TABLE IF NOT EXISTS subject_token_floor (
    person_id   uuid PRIMARY KEY,
    min_version integer NOT NULL,
    disabled    boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
