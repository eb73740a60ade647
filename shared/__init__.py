"""Rekisteri's own common code: the one place for what every service needs."""
