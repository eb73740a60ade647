-- One PostgreSQL role per service (and the portal), each owning only its own schema (issue 16; SPEC §9:
-- per-service credentials). Run once by the database's administrator role when the cluster is
-- created (docker-compose mounts it through init-roles.sh, which passes the passwords as psql
-- variables). The administrator role (POSTGRES_USER) keeps the database; services log in as
-- rekisteri_<service> and can neither create schemas nor read another service's tables.
-- `platform_sql` is the directory of shared/sql: the register-wide schemas (key store, erasure
-- ledger) are made here from the very migration files the services would run, which then find
-- them made and skip (issue 16).
\set ON_ERROR_STOP on

REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE ROLE rekisteri_contacts LOGIN PASSWORD :'contacts_password';
CREATE ROLE rekisteri_consent LOGIN PASSWORD :'consent_password';
CREATE ROLE rekisteri_retention LOGIN PASSWORD :'retention_password';
CREATE ROLE rekisteri_billing LOGIN PASSWORD :'billing_password';
-- The web front end (issue 19): its staff accounts and sessions only, no personal data.
CREATE ROLE rekisteri_portal LOGIN PASSWORD :'portal_password';
-- Owns erase_audit_entries() in each schema: the only way an audit row is deleted
-- (shared/sql/0003_audit_erasure_function.sql). Nobody logs in as it. That migration makes it
-- too where no administrator did (a cluster whose services ran as a superuser first), so it
-- may exist already: roles belong to the cluster, not to this database.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rekisteri_audit_eraser') THEN
        CREATE ROLE rekisteri_audit_eraser NOLOGIN;
    END IF;
END $$;
-- Owns the register-wide key store (docs/PRIVACY.md "The key store"). Nobody logs in as it:
-- the services get grants on its tables and functions below, no more.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rekisteri_keystore') THEN
        CREATE ROLE rekisteri_keystore NOLOGIN;
    END IF;
END $$;

GRANT CONNECT ON DATABASE :"dbname" TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing,
    rekisteri_portal;
-- Consent checks a campaign list (over 1,000 entries) through a temporary table with
-- statistics, emptied at each commit (services/consent/storage.py, _fetch_for_list).
GRANT TEMPORARY ON DATABASE :"dbname" TO rekisteri_consent;

CREATE SCHEMA contacts AUTHORIZATION rekisteri_contacts;
CREATE SCHEMA consent AUTHORIZATION rekisteri_consent;
CREATE SCHEMA retention AUTHORIZATION rekisteri_retention;
CREATE SCHEMA billing AUTHORIZATION rekisteri_billing;
CREATE SCHEMA portal AUTHORIZATION rekisteri_portal;

-- Each role sees its own schema only (a service's search_path is its schema).
ALTER ROLE rekisteri_contacts SET search_path = contacts;
ALTER ROLE rekisteri_consent SET search_path = consent;
ALTER ROLE rekisteri_retention SET search_path = retention;
ALTER ROLE rekisteri_billing SET search_path = billing;
ALTER ROLE rekisteri_portal SET search_path = portal;

-- Contacts' name search uses trigram indexes (issue 19; services/contacts/migrations/
-- 0008_name_search_trigrams.sql). A service role may not create extensions (it has no CREATE
-- on the database), so the administrator installs it here, in public, which every role may use.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;

-- The register-wide key store (SPEC §9, issue 15): made by the administrator, owned by
-- rekisteri_keystore. Every service reads keys and makes them (SELECT, INSERT on data_key) and
-- reads tombstones; only retention, which runs the erasure's last step, destroys a person's
-- keys (DELETE on data_key, INSERT on destroyed_key). A service's dead letters' own keys go
-- through keystore.destroy_dead_letter_keys, which destroys registered dead-letter subjects only
-- (shared/sql/0007_keystore_dead_letter_keys.sql). The portal holds no personal data: no grant.
\set keystore_sql :platform_sql '/0003_keystore.sql'
\i :keystore_sql
\set dead_letter_keys_sql :platform_sql '/0007_keystore_dead_letter_keys.sql'
\i :dead_letter_keys_sql
ALTER SCHEMA keystore OWNER TO rekisteri_keystore;
ALTER TABLE keystore.data_key OWNER TO rekisteri_keystore;
ALTER TABLE keystore.destroyed_key OWNER TO rekisteri_keystore;
ALTER TABLE keystore.dead_letter_subject OWNER TO rekisteri_keystore;
ALTER FUNCTION keystore.register_dead_letter_subject(uuid) OWNER TO rekisteri_keystore;
ALTER FUNCTION keystore.destroy_dead_letter_keys(uuid[]) OWNER TO rekisteri_keystore;
GRANT USAGE ON SCHEMA keystore TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing;
GRANT SELECT, INSERT ON keystore.data_key TO rekisteri_contacts, rekisteri_consent, rekisteri_retention,
    rekisteri_billing;
GRANT SELECT ON keystore.destroyed_key TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing;
GRANT DELETE ON keystore.data_key TO rekisteri_retention;
GRANT INSERT ON keystore.destroyed_key TO rekisteri_retention;
GRANT EXECUTE ON FUNCTION keystore.register_dead_letter_subject(uuid), keystore.destroy_dead_letter_keys(uuid[])
    TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing;

-- The erasure ledger (issue 15 part 4, shared/privacy/ledger.py): kept by the administrator,
-- who runs `rekisteri backup` and `restore`. Contacts, where every erasure starts, writes it;
-- every service reads whether a restore is unfinished before it serves.
\set ledger_sql :platform_sql '/0005_erasure_ledger.sql'
\i :ledger_sql
GRANT USAGE ON SCHEMA erasure_ledger TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing;
GRANT SELECT ON erasure_ledger.restore_in_progress TO rekisteri_contacts, rekisteri_consent, rekisteri_retention,
    rekisteri_billing;
GRANT SELECT, INSERT ON erasure_ledger.erasure TO rekisteri_contacts;
