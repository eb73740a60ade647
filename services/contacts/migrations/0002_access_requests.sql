-- Right of access (R12): requests, how the identity was verified, the owner's decision on a
-- chargeable one, and each service's answer until the report is assembled.

CREATE TABLE access_requests (
    id                  uuid PRIMARY KEY,
    person_id           uuid,                 -- NULL: asked for by contact points only (person may be erased)
    -- The contact points asked about, kept only until the request is answered (personal data),
    -- and their digests, kept to count a person's requests over twelve months.
    emails              text[] NOT NULL DEFAULT '{}',
    phones              text[] NOT NULL DEFAULT '{}',
    contact_digests     text[] NOT NULL DEFAULT '{}',
    channel             text NOT NULL CHECK (channel IN ('signed_letter', 'in_person', 'self_service')),
    verified_by         text NOT NULL,        -- staff user, or person:<id> for self-service
    verification_notes  text,                 -- how identity was checked; no personal values
    requested_by        text NOT NULL,
    chargeable          boolean NOT NULL DEFAULT false,
    -- awaiting_decision: chargeable, held for the register owner; collecting: services asked;
    -- fulfilled: every service answered; refused: the owner refused a chargeable request.
    status              text NOT NULL CHECK (status IN ('awaiting_decision', 'collecting', 'fulfilled', 'refused')),
    decision            text CHECK (decision IN ('charge', 'waive', 'refuse')),
    decision_reason     text,
    decided_by          text,
    decided_at          timestamptz,
    expected_services   text[] NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    asked_at            timestamptz,          -- when access-requested was published
    fulfilled_at        timestamptz
);
CREATE INDEX access_requests_person ON access_requests (person_id, created_at);
CREATE INDEX access_requests_digests ON access_requests USING gin (contact_digests);

-- One service's slice of a report (items with source and purpose). Deleted with the person.
CREATE TABLE access_report_parts (
    request_id   uuid NOT NULL REFERENCES access_requests (id) ON DELETE CASCADE,
    service      text NOT NULL,
    items        jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (request_id, service)
);
