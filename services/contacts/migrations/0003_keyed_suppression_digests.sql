-- SPEC §9, issue 15: contacts kept an unkeyed SHA-256 of every banned contact point; all
-- Finnish mobile numbers hash in minutes, so such a digest gives the number back. They go:
-- what contacts still holds in plain (a live person's emails and phones) is staged here and
-- digested again under REKISTERI_SUPPRESSION_KEY when the service first uses its list
-- (`storage._redigest_staged`); the rest is dropped. Consent's keyed suppression list still
-- holds those bans and re-announces them when such a contact point is registered again (R8).
CREATE TABLE suppression_redigest (
    value       text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
    purpose     text NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (value, kind, purpose)
);
INSERT INTO suppression_redigest (value, kind, purpose, recorded_at)
SELECT v.value, v.kind, s.purpose, min(s.recorded_at)
FROM suppressed_contact_points s
JOIN (SELECT e AS value, 'email' AS kind FROM persons, unnest(emails) AS e
      UNION SELECT ph, 'phone' FROM persons, unnest(phones) AS ph) v
  ON s.digest = encode(sha256(convert_to(v.value, 'UTF8')), 'hex')
GROUP BY v.value, v.kind, s.purpose;

DROP TABLE suppressed_contact_points;
-- Keyed digests (HMAC-SHA256) of banned contact points, kept after erasure so a B2B re-import
-- is banned at once (R4, R8); key_id names the chain of suppression keys (docs/PRIVACY.md).
CREATE TABLE suppressed_contact_points (
    digest       bytea NOT NULL,
    key_id       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('email', 'phone')),
    purpose      text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, purpose)
);
CREATE INDEX suppressed_contact_points_key_id ON suppressed_contact_points (key_id);

-- An access request's digests are `<key chain>:<hex>`; they are made again from the request's
-- own emails and phones (kept until the person is erased), the same way.
UPDATE access_requests SET contact_digests = '{}' WHERE contact_digests <> '{}';

-- The key chains digests are stored under now (see consent's 0003).
CREATE TABLE suppression_key_chain (
    chain         text PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now()
);
