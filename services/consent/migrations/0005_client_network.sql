-- Proof of consent (SPEC §10, issue 14): a self-service permission or ban records where it came
-- from as the client's network only (IPv4 /24, IPv6 /48), never the host address (SPEC §9:
-- minimise; docs/PRIVACY.md). NULL for changes recorded by staff or other systems. Goes with the
-- rest of the person's history at erasure.
ALTER TABLE consent_history ADD COLUMN IF NOT EXISTS client_network text;
