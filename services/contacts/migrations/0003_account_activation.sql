-- Accounts are activated by the person with a single-use code (issue 16): staff never set a
-- password. The code is stored only as a slow hash; a token version per account revokes
-- every earlier self-service token on a password change, a disable or erasure.
ALTER TABLE accounts ALTER COLUMN password_hash DROP NOT NULL;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS activation_code_hash text;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS activation_expires_at timestamptz;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS activated_at timestamptz;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS token_version integer NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
