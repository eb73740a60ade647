-- The register-wide data-key store (SPEC §9, docs/PRIVACY.md): its own schema, not one per
-- service, because a consumer opens what its publisher sealed. Every service's migrations
-- reach this file; the lock makes the first one create it and the others find it there.
SELECT pg_advisory_xact_lock(hashtext('migrate:keystore'));

CREATE SCHEMA IF NOT EXISTS keystore;

-- A person's data keys, wrapped by the master key named beside each (rotation re-wraps).
-- key_id grows when a person's data key is rotated; the newest seals, all open.
CREATE TABLE IF NOT EXISTS keystore.data_key (
    person_id     uuid NOT NULL,
    key_id        integer NOT NULL CHECK (key_id > 0),
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, key_id)
);
CREATE INDEX IF NOT EXISTS data_key_master ON keystore.data_key (master_key_id);

-- Erased persons (crypto-shredded): the id and the date only, so no key is made again and
-- a consumer meeting their events knows the person was erased.
CREATE TABLE IF NOT EXISTS keystore.destroyed_key (
    person_id    uuid PRIMARY KEY,
    destroyed_at timestamptz NOT NULL DEFAULT now()
);
