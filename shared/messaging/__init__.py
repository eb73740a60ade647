"""Events between services: the envelope and topic catalogue, the outbox that publishes them,
the inbox consumer that applies them exactly once in effect, and the Kafka plumbing."""
