-- The portal's own schema: staff accounts and web sign-in sessions. No personal data of
-- data subjects (a subject's session names only the person id) and no bearer tokens: the
-- portal mints a short-lived one per request to the services.
CREATE TABLE IF NOT EXISTS staff_accounts (
    username        text PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('register_owner', 'register_user', 'marketing', 'billing')),
    password_hash   text NOT NULL,
    totp_secret     text,
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS web_sessions (
    id_digest     bytea PRIMARY KEY,          -- sha256 of the cookie value: a database copy signs no one in
    kind          text NOT NULL CHECK (kind IN ('staff', 'subject')),
    username      text NOT NULL,
    role          text NOT NULL,
    person_id     uuid,
    data          jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions (expires_at);
