-- The erasure ledger (issue 15 part 4, SPEC §9): who was erased and when, person ids and
-- times only. It lives in a schema of its own that `rekisteri backup` leaves out of every
-- dump and `rekisteri restore` never drops, so a restore can re-apply every erasure the
-- backup does not know of. Register-wide like the key store: every service's migrations
-- reach this file and the lock makes the first one create it.
--
-- Created only when missing (issue 16): in production the database administrator creates it
-- (deploy/postgres/init-roles.sql runs this very file), and a service role may not create
-- schemas; the catalogue is asked first, since CREATE ... IF NOT EXISTS checks that privilege.
SELECT pg_advisory_xact_lock(hashtext('migrate:erasure_ledger'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'erasure_ledger') THEN
        CREATE SCHEMA erasure_ledger;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'erasure_ledger' AND c.relname = 'erasure') THEN
        CREATE TABLE erasure_ledger.erasure (
            person_id uuid PRIMARY KEY,
            erased_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX erasure_erased_at ON erasure_ledger.erasure (erased_at);
    END IF;
    -- Set by `rekisteri restore` before it drops anything and cleared once every erasure in
    -- the ledger is re-applied: a service refuses to start while a restore is unfinished, so
    -- restored data of an erased person is never served.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'erasure_ledger' AND c.relname = 'restore_in_progress') THEN
        CREATE TABLE erasure_ledger.restore_in_progress (
            singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            started_at timestamptz NOT NULL DEFAULT now(),
            backup     text NOT NULL
        );
    END IF;
END $$;
