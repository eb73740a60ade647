-- Person search pages by registration order (created_at, id): the cursor carries no name
-- (issue 20, SPEC §9). This index gives the first page of a broad search, and every later
-- page, without sorting every matching person.
CREATE INDEX IF NOT EXISTS persons_registration_order ON persons (created_at, id);
