-- One PostgreSQL role per service, each owning only its own schema (issue 16; SPEC §9:
-- per-service credentials). Run once by the database's administrator role when the cluster is
-- created (docker-compose mounts it through init-roles.sh, which passes the passwords as psql
-- variables). The administrator role (POSTGRES_USER) keeps the database; services log in as
-- rekisteri_<service> and can neither create schemas nor read another service's tables.
\set ON_ERROR_STOP on

REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE ROLE rekisteri_contacts LOGIN PASSWORD :'contacts_password';
CREATE ROLE rekisteri_consent LOGIN PASSWORD :'consent_password';
CREATE ROLE rekisteri_retention LOGIN PASSWORD :'retention_password';
CREATE ROLE rekisteri_billing LOGIN PASSWORD :'billing_password';
-- Owns erase_audit_entries() in each schema: the only way an audit row is deleted
-- (shared/sql/0003_audit_erasure_function.sql). Nobody logs in as it.
CREATE ROLE rekisteri_audit_eraser NOLOGIN;

GRANT CONNECT ON DATABASE :"dbname" TO rekisteri_contacts, rekisteri_consent, rekisteri_retention, rekisteri_billing;

CREATE SCHEMA contacts AUTHORIZATION rekisteri_contacts;
CREATE SCHEMA consent AUTHORIZATION rekisteri_consent;
CREATE SCHEMA retention AUTHORIZATION rekisteri_retention;
CREATE SCHEMA billing AUTHORIZATION rekisteri_billing;

-- Each role sees its own schema only (a service's search_path is its schema).
ALTER ROLE rekisteri_contacts SET search_path = contacts;
ALTER ROLE rekisteri_consent SET search_path = consent;
ALTER ROLE rekisteri_retention SET search_path = retention;
ALTER ROLE rekisteri_billing SET search_path = billing;
