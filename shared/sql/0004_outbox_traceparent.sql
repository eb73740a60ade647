-- The W3C trace context of the transaction that wrote the row (issue 17): the relay sends it
-- as the Kafka `traceparent` header, so one trace follows a change from request to consumers.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text;
