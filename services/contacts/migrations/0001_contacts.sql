-- The contacts service's schema: organisations, persons and everything about them (R3),
-- with per-field sources (R4), legal basis (R2), purposes (R1) and lifecycle state (R5-R7).

CREATE TABLE organisations (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    business_id  text UNIQUE,            -- y-tunnus, check digit validated, 'NNNNNNN-N'
    address      text,
    phone        text,                   -- E.164
    source       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE persons (
    id                uuid PRIMARY KEY,
    first_name        text NOT NULL,
    last_name         text NOT NULL,
    title             text,
    expertise         text,
    emails            text[] NOT NULL DEFAULT '{}',   -- lower-cased
    phones            text[] NOT NULL DEFAULT '{}',   -- E.164
    other_contact     jsonb NOT NULL DEFAULT '{}'::jsonb,
    organisation_id   uuid REFERENCES organisations (id),
    legal_basis       text NOT NULL,
    purposes          text[] NOT NULL,
    lifecycle_state   text NOT NULL,
    external_ref      text UNIQUE,      -- the id another system (CRM, B2B import) knows it by
    state_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX persons_emails ON persons USING gin (emails);
CREATE INDEX persons_phones ON persons USING gin (phones);
CREATE INDEX persons_organisation ON persons (organisation_id);
CREATE INDEX persons_last_name ON persons (lower(last_name));

-- R4: where each personal field came from, and when.
CREATE TABLE field_sources (
    person_id    uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    field        text NOT NULL,
    source       text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, field)
);

-- R3 registration data; the password only as an argon2id hash (R11).
CREATE TABLE accounts (
    person_id        uuid PRIMARY KEY REFERENCES persons (id) ON DELETE CASCADE,
    username         text NOT NULL UNIQUE,
    nickname         text,
    identifiers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    password_hash    text NOT NULL,
    failed_attempts  integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE relationships (
    id               uuid PRIMARY KEY,
    person_id        uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    organisation_id  uuid,
    kind             text NOT NULL CHECK (kind IN ('customer', 'prospect')),
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    source           text NOT NULL
);
CREATE INDEX relationships_person ON relationships (person_id);

CREATE TABLE assignments (
    id          uuid PRIMARY KEY,
    given_by    text NOT NULL CHECK (given_by IN ('principal', 'partner', 'customer')),
    title       text,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ended')),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    source      text NOT NULL
);

CREATE TABLE assignment_participants (
    assignment_id  uuid NOT NULL REFERENCES assignments (id) ON DELETE CASCADE,
    person_id      uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    PRIMARY KEY (assignment_id, person_id)
);
CREATE INDEX assignment_participants_person ON assignment_participants (person_id);

-- Orders, approvals, cancellations and interactions (R3 service-use data).
CREATE TABLE service_records (
    id           uuid PRIMARY KEY,
    person_id    uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('order', 'approval', 'cancellation', 'interaction')),
    occurred_at  timestamptz NOT NULL,
    description  text NOT NULL,
    purposes     text[] NOT NULL,
    source       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_records_person ON service_records (person_id);

-- Marketing bans known to contacts (from consent's optout-registered), per purpose (R13).
CREATE TABLE marketing_bans (
    person_id    uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    purpose      text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, purpose)
);

-- Digests (sha256) of banned contact points, kept after erasure, so a B2B re-import is
-- banned at once, before consent's suppression answer arrives (R4, R8). No plain values.
CREATE TABLE suppressed_contact_points (
    digest       text NOT NULL,
    purpose      text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, purpose)
);

-- R14: correction requests, their outcome and the change.
CREATE TABLE rectifications (
    id               uuid PRIMARY KEY,
    person_id        uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    requested_by     text NOT NULL,
    changes          jsonb NOT NULL,
    reason           text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by       text,
    decision_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz
);
CREATE INDEX rectifications_pending ON rectifications (created_at) WHERE status = 'pending';

-- Ids of erased persons only: makes repeated erase commands and late events answerable (R7).
CREATE TABLE erased_persons (
    person_id   uuid PRIMARY KEY,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    command_id  uuid
);
