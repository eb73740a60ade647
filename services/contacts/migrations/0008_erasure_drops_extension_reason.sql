-- SPEC §9 (issue 14): an extension's reason is free text told to the person and may name them
-- or their affairs, so it goes at their erasure. The row keeps the dates, who extended it and
-- when (the record that the answer came on time); `extension_reason_erased_at` says the reason
-- was there and went, so "an extension always has a reason" still holds for every live row.
ALTER TABLE rights_requests ADD COLUMN extension_reason_erased_at timestamptz;
DO $$
DECLARE
    found text;
BEGIN
    FOR found IN SELECT conname FROM pg_constraint
                 WHERE conrelid = 'rights_requests'::regclass AND contype = 'c'
                   AND pg_get_constraintdef(oid) LIKE '%extension_reason%'
    LOOP
        EXECUTE format('ALTER TABLE rights_requests DROP CONSTRAINT %I', found);
    END LOOP;
END $$;
ALTER TABLE rights_requests ADD CONSTRAINT rights_requests_extension_has_reason
    CHECK (extension_months = 0 OR (extension_reason IS NOT NULL AND extension_reason <> '')
           OR extension_reason_erased_at IS NOT NULL);
