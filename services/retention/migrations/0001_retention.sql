-- Retention's own state: per-person facts it times from, durable timers, legal holds and
-- disposition evidence. Ids and times only: no names, emails or phones (R7, R10).

-- What retention knows of a person. `state` is retention's view of the lifecycle:
-- active | ended | passive | disposing (a disposition was commanded).
CREATE TABLE IF NOT EXISTS persons (
    person_id   uuid PRIMARY KEY,
    state       text NOT NULL DEFAULT 'active',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS relationships (
    relationship_id uuid PRIMARY KEY,
    person_id       uuid NOT NULL,
    started_at      timestamptz,
    ended_at        timestamptz
);
CREATE INDEX IF NOT EXISTS relationships_person ON relationships (person_id);

CREATE TABLE IF NOT EXISTS assignments (
    assignment_id uuid NOT NULL,
    person_id     uuid NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz,
    PRIMARY KEY (person_id, assignment_id)
);

-- Marketing permissions (purpose x channel) and bans (purpose): decide erase vs transfer (R7, R8).
CREATE TABLE IF NOT EXISTS marketing_permissions (
    person_id uuid NOT NULL,
    purpose   text NOT NULL,
    channel   text NOT NULL,
    PRIMARY KEY (person_id, purpose, channel)
);
CREATE TABLE IF NOT EXISTS marketing_bans (
    person_id uuid NOT NULL,
    purpose   text NOT NULL,
    PRIMARY KEY (person_id, purpose)
);

-- Persons whose disposition is done (erased or moved to marketing): late events must not
-- start their timers again. The id only.
CREATE TABLE IF NOT EXISTS disposed_persons (
    person_id   uuid PRIMARY KEY,
    outcome     text NOT NULL,
    disposed_at timestamptz NOT NULL DEFAULT now()
);

-- Durable timers. One pending row per person and action; claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE IF NOT EXISTS deadlines (
    id             bigserial PRIMARY KEY,
    person_id      uuid NOT NULL,
    action         text NOT NULL CHECK (action IN ('passivate', 'dispose')),
    due_at         timestamptz NOT NULL,
    basis          text NOT NULL,
    anchor_at      timestamptz NOT NULL,
    policy_version text NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled')),
    held_by        uuid,          -- the hold that deferred it
    deferred_from  timestamptz,   -- the due time before a hold deferred it
    created_at     timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS deadlines_one_pending ON deadlines (person_id, action) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deadlines_due ON deadlines (due_at) WHERE status = 'pending';

-- Legal holds by the register owner; re-checked at the moment of disposition.
CREATE TABLE IF NOT EXISTS holds (
    hold_id     uuid PRIMARY KEY,
    person_id   uuid NOT NULL,
    reason      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    released_at timestamptz
);
CREATE INDEX IF NOT EXISTS holds_person ON holds (person_id) WHERE released_at IS NULL;

-- Evidence of every passivation and disposition (no personal data): what, why, when
-- commanded, and when each expected service confirmed.
CREATE TABLE IF NOT EXISTS evidence (
    command_id        uuid PRIMARY KEY,
    person_id         uuid NOT NULL,
    action            text NOT NULL CHECK (action IN ('passivate', 'erase', 'transfer_to_marketing')),
    basis             text NOT NULL,
    deadline_at       timestamptz NOT NULL,
    policy_version    text NOT NULL,
    commanded_at      timestamptz NOT NULL,
    last_commanded_at timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 1,
    expected          text[] NOT NULL,
    confirmations     jsonb NOT NULL DEFAULT '{}'::jsonb,
    overdue_since     timestamptz,
    completed_at      timestamptz
);
CREATE INDEX IF NOT EXISTS evidence_person ON evidence (person_id, commanded_at);
CREATE INDEX IF NOT EXISTS evidence_open ON evidence (last_commanded_at) WHERE completed_at IS NULL;
