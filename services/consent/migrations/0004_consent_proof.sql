-- Proof of consent (SPEC §10): each notice text the persons were shown, stored once under its
-- SHA-256, and the version labels that name it. consent_history.notice_version names a label;
-- a receipt (ISO/IEC TS 27560 / Kantara shape) shows the label and the text's digest.
CREATE TABLE IF NOT EXISTS notice_texts (
    sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    text        text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS notice_versions (
    version       text PRIMARY KEY,
    sha256        text NOT NULL REFERENCES notice_texts (sha256),
    language      text NOT NULL,
    published_by  text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);
