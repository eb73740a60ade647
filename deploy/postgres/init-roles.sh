#!/bin/sh
# docker-entrypoint-initdb.d hook: runs init-roles.sql once, on an empty data directory,
# with each service's password from the environment (never written into the SQL) and the
# platform migrations' directory (shared/sql, mounted read-only beside it).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v dbname="$POSTGRES_DB" \
  -v contacts_password="$CONTACTS_DB_PASSWORD" -v consent_password="$CONSENT_DB_PASSWORD" \
  -v retention_password="$RETENTION_DB_PASSWORD" -v billing_password="$BILLING_DB_PASSWORD" \
  -v portal_password="$PORTAL_DB_PASSWORD" \
  -v platform_sql=/docker-entrypoint-initdb.d/platform-sql \
  -f /docker-entrypoint-initdb.d/init-roles.sql.in
