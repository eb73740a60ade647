-- Platform tables every service has in its own schema: outbox, inbox, dead letters, audit.

-- Transactional outbox: written in the same transaction as the state change, relayed
-- to Kafka in id order, kept after relay for a window so a forgetful broker can be
-- replayed (SPEC §8).
CREATE TABLE IF NOT EXISTS outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          text NOT NULL,
    envelope     jsonb,
    raw          bytea,  -- set instead of envelope for dead letters: the original bytes
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Idempotent inbox: a consumed event's (source, id), recorded with its effect.
CREATE TABLE IF NOT EXISTS inbox (
    source      text NOT NULL,
    event_id    text NOT NULL,
    topic       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- Every message this service could not process, with its reason and original bytes.
CREATE TABLE IF NOT EXISTS dead_letters (
    id             bigserial PRIMARY KEY,
    topic          text NOT NULL,
    partition      integer,
    "offset"       bigint,
    consumer       text NOT NULL,
    reason         text NOT NULL,
    original       bytea NOT NULL,
    digest         text NOT NULL,
    key            bytea,
    event_id       text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    replayed_at    timestamptz,
    UNIQUE (consumer, digest)
);

-- Append-only audit log (R10): who, with which role, whose data, what, when. Ids only.
CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    person_id   uuid,
    target      text,
    outcome     text NOT NULL DEFAULT 'allowed',
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_person ON audit_log (person_id, at);

CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('rekisteri.erasing', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

-- What the service last knew of the broker (SPEC §8 replay after a broker restart).
CREATE TABLE IF NOT EXISTS broker_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    incarnation uuid,
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- Wake the relay at once when a transaction adds outbox rows (latency, R13 "at once").
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
