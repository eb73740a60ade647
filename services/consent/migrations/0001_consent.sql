-- Consent service schema (R8, R9, R13). No personal values are stored here: contact
-- points exist only as keyed hashes (HMAC-SHA256 of the normalised email / E.164 phone).

-- Current state per person x purpose x channel, with the evidence of the last change.
-- A missing row means "unknown".
CREATE TABLE IF NOT EXISTS consent_state (
    person_id      uuid NOT NULL,
    purpose        text NOT NULL,
    channel        text NOT NULL,
    status         text NOT NULL CHECK (status IN ('granted', 'banned')),
    source         text NOT NULL,
    method         text NOT NULL,
    actor          text NOT NULL,
    notice_version text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, purpose, channel)
);

-- Append-only history of every change, the evidence kept with it.
CREATE TABLE IF NOT EXISTS consent_history (
    id             bigserial PRIMARY KEY,
    person_id      uuid NOT NULL,
    purpose        text NOT NULL,
    channel        text NOT NULL,
    change         text NOT NULL CHECK (change IN ('granted', 'banned', 'withdrawn', 'ban_lifted')),
    source         text NOT NULL,
    method         text NOT NULL,
    actor          text NOT NULL,
    notice_version text,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS consent_history_person ON consent_history (person_id, id);

CREATE OR REPLACE FUNCTION consent_history_is_append_only() RETURNS trigger AS $$
BEGIN
    -- Erasure (R7) is the one exception: it runs with consent.erasing = 'on'.
    IF TG_OP = 'DELETE' AND current_setting('consent.erasing', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_history is append-only';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS consent_history_append_only ON consent_history;
CREATE TRIGGER consent_history_append_only BEFORE UPDATE OR DELETE ON consent_history
    FOR EACH ROW EXECUTE FUNCTION consent_history_is_append_only();

-- Which keyed contact-point hashes belong to which person (from contact events).
CREATE TABLE IF NOT EXISTS contact_point (
    digest    bytea NOT NULL,
    person_id uuid NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('email', 'phone')),
    PRIMARY KEY (digest, person_id)
);
CREATE INDEX IF NOT EXISTS contact_point_person ON contact_point (person_id);

-- The suppression list (R8): survives contact-erased. Hashes, purpose, channel, when.
CREATE TABLE IF NOT EXISTS suppression_record (
    digest      bytea NOT NULL,
    purpose     text NOT NULL,
    channel     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
    source      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, purpose, channel)
);

-- Persons erased everywhere (R7): the id alone, so a check by person id stays denied.
CREATE TABLE IF NOT EXISTS erased_person (
    person_id uuid PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now()
);

-- The marketing register (R7, R9): persons moved there by their final disposition.
CREATE TABLE IF NOT EXISTS marketing_register (
    person_id      uuid PRIMARY KEY,
    transferred_at timestamptz NOT NULL DEFAULT now()
);
