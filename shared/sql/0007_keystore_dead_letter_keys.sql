-- Dead letters' own data keys, destroyed without the power to destroy a person's (issue 16,
-- least privilege; issue 15 H1; docs/PRIVACY.md "Who destroys the key").
--
-- Every service's dead-letter trigger destroys its dead letters' keys, but only retention may
-- destroy a person's. So no service role gets DELETE on keystore.data_key: a dead letter's
-- subject is registered when its row is written, and these two SECURITY DEFINER functions
-- (owned in production by the NOLOGIN role rekisteri_keystore, deploy/postgres/init-roles.sql)
-- destroy registered subjects only. A subject is registered only while it has no tombstone and
-- no key older than the registering transaction: a person's key, made when they were sealed
-- first, can never be registered, so never destroyed through here.
--
-- Register-wide like the key store and created only when missing: the administrator runs this
-- very file in production (a service role cannot create in `keystore`).
SELECT pg_advisory_xact_lock(hashtext('migrate:keystore'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'keystore' AND c.relname = 'dead_letter_subject') THEN
        -- The subjects of dead letters still kept: ids of no person, and when registered.
        CREATE TABLE keystore.dead_letter_subject (
            subject       uuid PRIMARY KEY,
            registered_at timestamptz NOT NULL DEFAULT now()
        );
    END IF;
    IF NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace  -- not to_regprocedure:
                   WHERE n.nspname = 'keystore' AND p.proname = 'register_dead_letter_subject') THEN  -- it needs USAGE
        CREATE FUNCTION keystore.register_dead_letter_subject(dead_letter uuid) RETURNS void
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('keystore:' || dead_letter::text));
            IF EXISTS (SELECT FROM keystore.destroyed_key d WHERE d.person_id = dead_letter)
               OR EXISTS (SELECT FROM keystore.data_key k WHERE k.person_id = dead_letter AND k.created_at < now()) THEN
                RAISE EXCEPTION 'subject % is not a dead letter''s: it has an earlier key or a tombstone', dead_letter;
            END IF;
            INSERT INTO keystore.dead_letter_subject (subject) VALUES (dead_letter) ON CONFLICT DO NOTHING;
        END $f$;
        REVOKE ALL ON FUNCTION keystore.register_dead_letter_subject(uuid) FROM PUBLIC;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'keystore' AND p.proname = 'destroy_dead_letter_keys') THEN
        -- Like keystore.destroy_keys (tombstone, deletion, under each subject's advisory lock
        -- in id order), for registered dead-letter subjects only; others are left as they are.
        CREATE FUNCTION keystore.destroy_dead_letter_keys(subjects uuid[]) RETURNS integer
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
        DECLARE
            registered uuid[];
        BEGIN
            SELECT coalesce(array_agg(s.subject ORDER BY s.subject), '{}') INTO registered
              FROM keystore.dead_letter_subject s WHERE s.subject = ANY(subjects);
            PERFORM pg_advisory_xact_lock(hashtext('keystore:' || r::text)) FROM unnest(registered) AS r ORDER BY r;
            INSERT INTO keystore.destroyed_key (person_id) SELECT unnest(registered) ON CONFLICT DO NOTHING;
            DELETE FROM keystore.data_key WHERE person_id = ANY(registered);
            DELETE FROM keystore.dead_letter_subject WHERE subject = ANY(registered);
            RETURN cardinality(registered);
        END $f$;
        REVOKE ALL ON FUNCTION keystore.destroy_dead_letter_keys(uuid[]) FROM PUBLIC;
    END IF;
END $$;
