-- Processors (GDPR Art. 28, the notice §4 "alihankkijat"): who processes the register's data on
-- the controller's behalf, for which purposes, where, under which agreement. Company data only.
CREATE TABLE processors (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    business_id     text NOT NULL UNIQUE,   -- y-tunnus, check digit verified
    service         text NOT NULL,
    purposes        text[] NOT NULL CHECK (cardinality(purposes) > 0),
    location        text NOT NULL,          -- ISO 3166-1 alpha-2 country where the data is processed
    agreement_date  date NOT NULL,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
