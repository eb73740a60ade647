-- Persons contacts has passivated (R6): their consents are readable only by the register owner.
CREATE TABLE IF NOT EXISTS passive_person (
    person_id uuid PRIMARY KEY,
    since     timestamptz NOT NULL DEFAULT now()
);
