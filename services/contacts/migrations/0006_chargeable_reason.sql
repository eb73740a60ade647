-- A chargeable access request names why (SPEC §10): the earlier free request within twelve
-- months and when it was received. Requests decided before this migration get it computed.
ALTER TABLE access_requests ADD COLUMN chargeable_because uuid, ADD COLUMN chargeable_because_at timestamptz;
WITH reasons AS (
    SELECT a.id, e.id AS earlier_id, e.created_at AS earlier_at
    FROM access_requests a
    CROSS JOIN LATERAL (
        SELECT p.id, p.created_at FROM access_requests p
        WHERE p.id <> a.id AND p.status <> 'refused' AND p.created_at < a.created_at
          AND p.created_at > a.created_at - interval '12 months'
          AND (p.person_id = a.person_id OR (a.person_id IS NULL AND p.contact_digests && a.contact_digests))
        ORDER BY p.chargeable, p.created_at DESC LIMIT 1) e
    WHERE a.chargeable)
UPDATE access_requests t SET chargeable_because = r.earlier_id, chargeable_because_at = r.earlier_at
FROM reasons r WHERE t.id = r.id;
