-- Deadlines of data-subject requests (SPEC §10, GDPR Art. 12(3)). One row per request, with
-- the id of the request it times (an access request or a rectification): the receipt, the
-- Helsinki day the month is counted from, the days identity was unverified, and an extension
-- told to the person. Whether it is answered is read from the request itself (view below), so
-- the two never disagree. No personal values here: ids, dates and the controller's reason.
CREATE TABLE rights_requests (
    id                    uuid PRIMARY KEY,
    kind                  text NOT NULL CHECK (kind IN ('access', 'rectification', 'objection', 'erasure')),
    person_id             uuid,
    channel               text NOT NULL,
    received_at           timestamptz NOT NULL,
    received_on           date NOT NULL,
    paused_days           integer NOT NULL DEFAULT 0 CHECK (paused_days >= 0),
    due_date              date NOT NULL,
    extension_months      integer NOT NULL DEFAULT 0 CHECK (extension_months BETWEEN 0 AND 2),
    extended_until        date,
    extension_reason      text,
    extended_by           text,
    extended_at           timestamptz,
    -- How identity was verified (signed_letter, in_person, self_service login, email/phone code)
    -- and when; NULL while a code is outstanding (the clock is paused meanwhile).
    identity_method       text,
    identity_verified_at  timestamptz,
    CHECK ((extension_months = 0) = (extended_until IS NULL)),
    CHECK (extension_months = 0 OR (extension_reason IS NOT NULL AND extension_reason <> ''))
);
CREATE INDEX rights_requests_due ON rights_requests (due_date);

-- Each pause of the clock while identity is unverified (recorded; the due date moves by it).
CREATE TABLE rights_request_pauses (
    request_id  uuid NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    reason      text NOT NULL,
    PRIMARY KEY (request_id, started_at)
);

-- Requests received before this migration get their deadline (PostgreSQL's month arithmetic
-- clamps to the month's last day, as the rule does).
INSERT INTO rights_requests (id, kind, person_id, channel, received_at, received_on, due_date, identity_method,
                             identity_verified_at)
SELECT id, 'access', person_id, channel, created_at, (created_at AT TIME ZONE 'Europe/Helsinki')::date,
       ((created_at AT TIME ZONE 'Europe/Helsinki')::date + interval '1 month')::date, channel, created_at
FROM access_requests;
INSERT INTO rights_requests (id, kind, person_id, channel, received_at, received_on, due_date, identity_method,
                             identity_verified_at)
SELECT id, 'rectification', person_id, CASE WHEN requested_by LIKE 'person:%' THEN 'self_service' ELSE 'staff' END,
       created_at, (created_at AT TIME ZONE 'Europe/Helsinki')::date,
       ((created_at AT TIME ZONE 'Europe/Helsinki')::date + interval '1 month')::date,
       CASE WHEN requested_by LIKE 'person:%' THEN 'self_service' ELSE 'staff' END, created_at
FROM rectifications;

-- The queue: a request is answered when its report is assembled or refused, or its
-- rectification decided; a request whose record went with an erased person is closed.
CREATE VIEW rights_request_queue AS
SELECT q.*,
       COALESCE(q.extended_until, q.due_date) AS answer_by,
       CASE WHEN q.kind = 'access' THEN COALESCE(a.fulfilled_at, CASE WHEN a.status = 'refused' THEN a.decided_at END)
            WHEN q.kind = 'rectification' THEN r.decided_at END AS answered_at,
       CASE WHEN q.kind = 'access' AND a.id IS NULL THEN 'closed'
            WHEN q.kind = 'rectification' AND r.id IS NULL THEN 'closed'
            WHEN COALESCE(a.fulfilled_at, CASE WHEN a.status = 'refused' THEN a.decided_at END, r.decided_at) IS NOT NULL
                 THEN 'answered'
            WHEN q.identity_verified_at IS NULL THEN 'awaiting_identity'
            ELSE 'open' END AS status
FROM rights_requests q
LEFT JOIN access_requests a ON q.kind = 'access' AND a.id = q.id
LEFT JOIN rectifications r ON q.kind = 'rectification' AND r.id = q.id;
