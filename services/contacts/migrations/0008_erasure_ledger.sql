-- Issue 15: the register-wide erasure ledger (shared/sql/0005_erasure_ledger.sql) starts with
-- every erasure contacts made before it existed.
INSERT INTO erasure_ledger.erasure (person_id, erased_at)
    SELECT person_id, erased_at FROM erased_persons ON CONFLICT (person_id) DO NOTHING;
