"""Operators' tools: the `rekisteri` CLI, the embedded stack and its launcher, and the
operations (dead letters, outbox, lag, publish) they run. Nothing in a service imports these."""
