-- Dead letters forget with the person they name (issue 15, SPEC §9, docs/PRIVACY.md).
--
-- seal_subject: the dead letter's own data-key subject in the key store (a fresh UUID, no
-- person). The copy relayed to `<topic>-dlq` is sealed under it; when the row goes (prune,
-- erasure, an operator's DELETE or TRUNCATE) the trigger below destroys that key in the same
-- transaction, so every copy on the topic stops opening.
-- naming: keyed digests (`shared/privacy/naming.py`, `<key id>:<hex>`) of the ids, emails and
-- phones the original names, so each service's erasure finds the person's dead letters.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS seal_subject uuid;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS naming text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS dead_letters_naming ON dead_letters USING gin (naming);

-- The key goes with the row: a tombstone written and the key deleted (like keystore's
-- `destroy_keys`, under the subject's advisory lock), and the sealed copy still waiting in
-- this schema's outbox (keyed by the subject) dropped.
CREATE OR REPLACE FUNCTION dead_letter_key_destroyed() RETURNS trigger AS $$
BEGIN
    IF OLD.seal_subject IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('keystore:' || OLD.seal_subject::text));
        INSERT INTO keystore.destroyed_key (person_id) VALUES (OLD.seal_subject) ON CONFLICT DO NOTHING;
        DELETE FROM keystore.data_key WHERE person_id = OLD.seal_subject;
        EXECUTE format('DELETE FROM %I.outbox WHERE raw IS NOT NULL AND key = $1', TG_TABLE_SCHEMA)
            USING OLD.seal_subject::text;
    END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS dead_letter_key_destroyed ON dead_letters;
CREATE TRIGGER dead_letter_key_destroyed AFTER DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION dead_letter_key_destroyed();

-- TRUNCATE fires no row trigger: destroy every row's key before the table empties.
CREATE OR REPLACE FUNCTION dead_letters_truncated() RETURNS trigger AS $$
DECLARE
    subjects uuid[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(seal_subject), ''{}'') FROM %I.dead_letters'
                   ' WHERE seal_subject IS NOT NULL', TG_TABLE_SCHEMA) INTO subjects;
    INSERT INTO keystore.destroyed_key (person_id) SELECT unnest(subjects) ON CONFLICT DO NOTHING;
    DELETE FROM keystore.data_key WHERE person_id = ANY(subjects);
    EXECUTE format('DELETE FROM %I.outbox WHERE raw IS NOT NULL AND key = ANY($1)', TG_TABLE_SCHEMA)
        USING subjects::text[];
    RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS dead_letters_truncated ON dead_letters;
CREATE TRIGGER dead_letters_truncated BEFORE TRUNCATE ON dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letters_truncated();
