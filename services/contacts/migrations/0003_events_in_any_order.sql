-- A person's relationship and assignment events travel on four topics, so an end can arrive
-- before its start. Contacts records what it learns in any order and converges with retention:
-- an end seen first leaves the start's facts (kind, given_by, started_at) to fill in later.
ALTER TABLE relationships ALTER COLUMN kind DROP NOT NULL;
ALTER TABLE relationships ALTER COLUMN started_at DROP NOT NULL;
ALTER TABLE assignments ALTER COLUMN given_by DROP NOT NULL;
ALTER TABLE assignments ALTER COLUMN started_at DROP NOT NULL;
ALTER TABLE assignment_participants ALTER COLUMN started_at DROP NOT NULL;
