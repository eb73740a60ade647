-- Erasure on request (GDPR Art. 17, issue 14): the register owner decided a person's erasure
-- request `erase`; contacts says so on `erasure-requested`. The person's disposition is then an
-- erasure due when retention heard of it, whatever their spans or permissions say; a legal hold
-- in force still defers it (Art. 17(3)). Ids only; dropped with the person's other tracking.
CREATE TABLE IF NOT EXISTS erasure_requests (
    person_id    uuid PRIMARY KEY,
    request_id   uuid NOT NULL,
    requested_at timestamptz NOT NULL
);
