-- Objections (GDPR Art. 21) and erasure on request (Art. 17) in the same request queue as access
-- and rectification (SPEC §10, issue 14). An objection to direct marketing takes effect when it
-- is received (Art. 21(3)): the ban is applied at once and its due date is the day of receipt.
-- A general objection (Art. 21(1)) and an erasure request are answered within the month.
-- `grounds` and `decision_reason` are free text that may name the person: dropped at erasure.
CREATE TABLE subject_requests (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('objection', 'erasure')),
    person_id        uuid NOT NULL,
    scope            text CHECK (scope IN ('direct_marketing', 'processing')),
    purposes         text[] NOT NULL DEFAULT '{}',
    grounds          text,
    requested_by     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    decision         text CHECK (decision IN ('applied', 'upheld', 'rejected', 'erase', 'refused')),
    decision_reason  text,
    decided_by       text,
    decided_at       timestamptz,
    CHECK ((kind = 'objection') = (scope IS NOT NULL))
);
CREATE INDEX subject_requests_person ON subject_requests (person_id);

-- The queue now answers these kinds too: an objection or erasure request is answered when
-- decided; an erasure request also when the person is erased. (Recreated: q.* grew in 0008.)
DROP VIEW rights_request_queue;
CREATE VIEW rights_request_queue AS
SELECT q.*,
       COALESCE(q.extended_until, q.due_date) AS answer_by,
       CASE WHEN q.kind = 'access' THEN COALESCE(a.fulfilled_at, CASE WHEN a.status = 'refused' THEN a.decided_at END)
            WHEN q.kind = 'rectification' THEN r.decided_at
            ELSE COALESCE(s.decided_at, CASE WHEN q.kind = 'erasure' THEN e.erased_at END) END AS answered_at,
       CASE WHEN q.kind = 'access' AND a.id IS NULL THEN 'closed'
            WHEN q.kind = 'rectification' AND r.id IS NULL THEN 'closed'
            WHEN q.kind IN ('objection', 'erasure') AND s.id IS NULL THEN 'closed'
            WHEN COALESCE(a.fulfilled_at, CASE WHEN a.status = 'refused' THEN a.decided_at END, r.decided_at,
                          s.decided_at, CASE WHEN q.kind = 'erasure' THEN e.erased_at END) IS NOT NULL
                 THEN 'answered'
            WHEN q.identity_verified_at IS NULL THEN 'awaiting_identity'
            ELSE 'open' END AS status
FROM rights_requests q
LEFT JOIN access_requests a ON q.kind = 'access' AND a.id = q.id
LEFT JOIN rectifications r ON q.kind = 'rectification' AND r.id = q.id
LEFT JOIN subject_requests s ON q.kind IN ('objection', 'erasure') AND s.id = q.id
LEFT JOIN erased_persons e ON q.kind = 'erasure' AND e.person_id = q.person_id;
