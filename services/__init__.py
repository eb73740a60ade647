"""The four services of the register; each owns its schema and talks only through topics."""
