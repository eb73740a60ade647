-- The register-wide data-key store (SPEC §9, docs/PRIVACY.md): its own schema, not one per
-- service, because a consumer opens what its publisher sealed. Every service's migrations
-- reach this file; the lock makes the first one create it and the others find it there.
--
-- Created only when missing (issue 16): in production the database administrator creates it
-- (deploy/postgres/init-roles.sql runs this very file) and a service role may neither create
-- a schema nor a table in it. PostgreSQL checks that privilege before IF NOT EXISTS, so the
-- catalogue is asked first (not to_regclass: it needs USAGE on the schema).
SELECT pg_advisory_xact_lock(hashtext('migrate:keystore'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'keystore') THEN
        CREATE SCHEMA keystore;
    END IF;
    -- A person's data keys, wrapped by the master key named beside each (rotation re-wraps).
    -- key_id grows when a person's data key is rotated; the newest seals, all open.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'keystore' AND c.relname = 'data_key') THEN
        CREATE TABLE keystore.data_key (
            person_id     uuid NOT NULL,
            key_id        integer NOT NULL CHECK (key_id > 0),
            master_key_id text NOT NULL,
            wrapped       bytea NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (person_id, key_id)
        );
        CREATE INDEX data_key_master ON keystore.data_key (master_key_id);
    END IF;
    -- Erased persons (crypto-shredded): the id and the date only, so no key is made again and
    -- a consumer meeting their events knows the person was erased.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'keystore' AND c.relname = 'destroyed_key') THEN
        CREATE TABLE keystore.destroyed_key (
            person_id    uuid PRIMARY KEY,
            destroyed_at timestamptz NOT NULL DEFAULT now()
        );
    END IF;
END $$;
