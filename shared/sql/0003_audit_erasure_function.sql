-- The audit log's one exception to append-only (issue 16): rows are deleted only through
-- erase_audit_entries(), a SECURITY DEFINER function owned by the separate NOLOGIN role
-- rekisteri_audit_eraser; the trigger lets a DELETE through only when that role runs it.
-- A session setting (the former `rekisteri.erasing`) no longer opens the log.
--
-- The role is created here when the migrating role may (the embedded stack's superuser). In
-- production the database administrator creates it (deploy/postgres/init-roles.sql) and, once
-- the migrations have run, hands each schema's function to it (ALTER FUNCTION ... OWNER TO
-- rekisteri_audit_eraser); until then the function stays the service role's and no audit row
-- can be deleted at all. What this cannot stop: the table's owner or a superuser dropping the
-- trigger, so in production audit_log's schema owner is not the role the service runs as
-- (deploy/SCALING.md).
-- Roles belong to the cluster, not to a schema: every service's migrations reach this file at
-- once, so the lock makes the first create the role and the others find it (without it one of
-- them failed with a duplicate pg_authid key and the service exited at start-up).
SELECT pg_advisory_xact_lock(hashtext('migrate:roles'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rekisteri_audit_eraser') THEN
        CREATE ROLE rekisteri_audit_eraser NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'rekisteri_audit_eraser not created: the audit log stays strictly append-only';
END $$;

CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'rekisteri_audit_eraser' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION erase_audit_entries(subject uuid) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM audit_log WHERE person_id = subject;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$;
REVOKE ALL ON FUNCTION erase_audit_entries(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION erase_audit_entries(uuid) TO CURRENT_USER;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rekisteri_audit_eraser') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO rekisteri_audit_eraser', current_schema());
        GRANT SELECT, DELETE ON audit_log TO rekisteri_audit_eraser;
        ALTER FUNCTION erase_audit_entries(uuid) OWNER TO rekisteri_audit_eraser;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'erase_audit_entries stays owned by the service role: no audit row can be deleted';
END $$;
