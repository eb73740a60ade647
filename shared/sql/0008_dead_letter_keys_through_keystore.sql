-- This schema's dead letters register their subjects and destroy their keys through the key
-- store's functions (shared/sql/0007_keystore_dead_letter_keys.sql, issue 16): the service role
-- needs no DELETE on keystore.data_key, so it cannot destroy a person's key.

-- A dead letter's subject is registered when its row is written (or first given a subject).
CREATE OR REPLACE FUNCTION dead_letter_subject_registered() RETURNS trigger AS $$
BEGIN
    PERFORM keystore.register_dead_letter_subject(NEW.seal_subject);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS dead_letter_subject_registered ON dead_letters;
CREATE TRIGGER dead_letter_subject_registered AFTER INSERT ON dead_letters
    FOR EACH ROW WHEN (NEW.seal_subject IS NOT NULL) EXECUTE FUNCTION dead_letter_subject_registered();
DROP TRIGGER IF EXISTS dead_letter_subject_changed ON dead_letters;
CREATE TRIGGER dead_letter_subject_changed AFTER UPDATE OF seal_subject ON dead_letters
    FOR EACH ROW WHEN (NEW.seal_subject IS NOT NULL AND NEW.seal_subject IS DISTINCT FROM OLD.seal_subject)
    EXECUTE FUNCTION dead_letter_subject_registered();

-- The key goes with the row (as in 0006), now through the key store's function.
CREATE OR REPLACE FUNCTION dead_letter_key_destroyed() RETURNS trigger AS $$
BEGIN
    IF OLD.seal_subject IS NOT NULL THEN
        PERFORM keystore.destroy_dead_letter_keys(ARRAY[OLD.seal_subject]);
        EXECUTE format('DELETE FROM %I.outbox WHERE raw IS NOT NULL AND key = $1', TG_TABLE_SCHEMA)
            USING OLD.seal_subject::text;
    END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION dead_letters_truncated() RETURNS trigger AS $$
DECLARE
    subjects uuid[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(seal_subject), ''{}'') FROM %I.dead_letters'
                   ' WHERE seal_subject IS NOT NULL', TG_TABLE_SCHEMA) INTO subjects;
    PERFORM keystore.destroy_dead_letter_keys(subjects);
    EXECUTE format('DELETE FROM %I.outbox WHERE raw IS NOT NULL AND key = ANY($1)', TG_TABLE_SCHEMA)
        USING subjects::text[];
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- Dead letters written before this migration: registered where the migrating role may (the
-- embedded stack's superuser). A service role never had working dead letters before (issue 16).
DO $$
BEGIN
    INSERT INTO keystore.dead_letter_subject (subject)
        SELECT seal_subject FROM dead_letters WHERE seal_subject IS NOT NULL ON CONFLICT DO NOTHING;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'earlier dead letters not registered: the administrator registers them (docs/PRIVACY.md)';
END $$;
