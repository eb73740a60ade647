-- Portability exports (GDPR Art. 20, issue 14): contacts' own part is built when the export is
-- read; consent's part (the permissions and bans the person gave) is asked on `access-requested`
-- (purpose portability) and arrives on `access-report-part`, kept here until read. Everything
-- goes with the person at erasure.
CREATE TABLE portability_exports (
    id                uuid PRIMARY KEY,
    person_id         uuid NOT NULL,
    requested_by      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    expected_services text[] NOT NULL,
    parts             jsonb NOT NULL DEFAULT '{}'::jsonb,  -- service → its items
    ready_at          timestamptz
);
CREATE INDEX portability_exports_person ON portability_exports (person_id);
