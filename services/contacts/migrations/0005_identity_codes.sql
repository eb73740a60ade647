-- Requests received by email or phone (SPEC §10): the identity is verified by a one-time code
-- sent to the person's own contact points; until then the request waits and its clock is paused.
ALTER TABLE access_requests DROP CONSTRAINT access_requests_channel_check;
ALTER TABLE access_requests ADD CONSTRAINT access_requests_channel_check
    CHECK (channel IN ('signed_letter', 'in_person', 'self_service', 'email', 'phone'));
ALTER TABLE access_requests DROP CONSTRAINT access_requests_status_check;
ALTER TABLE access_requests ADD CONSTRAINT access_requests_status_check
    CHECK (status IN ('awaiting_identity', 'awaiting_decision', 'collecting', 'fulfilled', 'refused'));

-- The outstanding code of a request: only its salted SHA-256, ten minutes, five tries.
CREATE TABLE identity_codes (
    request_id  uuid PRIMARY KEY REFERENCES rights_requests (id) ON DELETE CASCADE,
    salt        bytea NOT NULL,
    code_hash   bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    tries_left  integer NOT NULL CHECK (tries_left >= 0),
    issued_at   timestamptz NOT NULL,
    issued_by   text NOT NULL
);
