-- SPEC §9: every stored digest names the chain of suppression keys it was made under, so the
-- key can be rotated (`rekisteri suppression rekey`, docs/PRIVACY.md) without a ban lapsing.
-- Digests made before this migration are under a key of unknown id (the old
-- CONSENT_SUPPRESSION_KEY, or one derived from the token secret): they are marked 'legacy'
-- and no longer match; docs/PRIVACY.md says how to carry such a list over.
ALTER TABLE contact_point ADD COLUMN IF NOT EXISTS key_id text NOT NULL DEFAULT 'legacy';
ALTER TABLE contact_point ALTER COLUMN key_id DROP DEFAULT;
ALTER TABLE suppression_record ADD COLUMN IF NOT EXISTS key_id text NOT NULL DEFAULT 'legacy';
ALTER TABLE suppression_record ALTER COLUMN key_id DROP DEFAULT;
-- rekey moves digests chain by chain
CREATE INDEX IF NOT EXISTS contact_point_key_id ON contact_point (key_id);
CREATE INDEX IF NOT EXISTS suppression_record_key_id ON suppression_record (key_id);

-- The key chains digests are stored under now: a check digests a value under each. `rekey`
-- adds a chain here before it moves any digest onto it, and removes the emptied ones after.
CREATE TABLE IF NOT EXISTS suppression_key_chain (
    chain         text PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now()
);
