-- Plan versions (issue 18, SPEC §6): each usage event is rated by the version in force at
-- its time; usage is kept per version so a change mid-month splits the month's lines.

CREATE TABLE IF NOT EXISTS plan_versions (
    customer_id    uuid NOT NULL,
    effective_from timestamptz NOT NULL,
    plan           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, effective_from)
);

-- The plans of before versions become each customer's first version, in force from the start.
INSERT INTO plan_versions (customer_id, effective_from, plan, created_at, updated_at)
SELECT customer_id, '1970-01-01T00:00:00Z', plan, updated_at, updated_at FROM price_plans
ON CONFLICT DO NOTHING;

-- Bumped by every version change; ingestion holds a share lock on it, so a batch folded
-- with older versions is folded again instead of keeping usage under the wrong version.
CREATE TABLE IF NOT EXISTS plan_revision (
    id       integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL DEFAULT 0
);
INSERT INTO plan_revision (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING;

ALTER TABLE usage_aggregates ADD COLUMN IF NOT EXISTS version_from timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z';
ALTER TABLE usage_aggregates DROP CONSTRAINT IF EXISTS usage_aggregates_pkey;
ALTER TABLE usage_aggregates ADD PRIMARY KEY (customer_id, meter, period, invoice_period, dimensions, version_from);

ALTER TABLE usage_unique_values ADD COLUMN IF NOT EXISTS version_from timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z';
ALTER TABLE usage_unique_values DROP CONSTRAINT IF EXISTS usage_unique_values_pkey;
ALTER TABLE usage_unique_values ADD PRIMARY KEY (customer_id, meter, period, dimensions, version_from, value);
