"""Settings of the retention service, read once at start-up.

The retention policy is validated here so a policy that breaks R7 (final disposition more
than a year after the last assignment) stops the service before it takes any work.
"""
from __future__ import annotations

from pydantic import model_validator

from services.retention.domain import MAX_DISPOSITION_DAYS, Policy
from shared.settings import ServiceSettings


class RetentionSettings(ServiceSettings):
    service_name: str = "retention"
    # R6: days after the relationship (and every assignment) ended before passivation.
    retention_grace_days: int = 0
    # R7: days after the last assignment or relationship ended before the final disposition.
    retention_disposition_days: int = MAX_DISPOSITION_DAYS
    retention_scheduler_interval_s: float = 5.0
    retention_scheduler_batch_size: int = 2000
    # A command not confirmed by every expected service within this is overdue and re-commanded.
    retention_confirmation_timeout_s: float = 3600.0

    @model_validator(mode="after")
    def _policy_is_lawful(self) -> RetentionSettings:
        self.policy()  # raises ValueError naming the setting and the rule
        if self.retention_scheduler_interval_s <= 0:
            raise ValueError("RETENTION_SCHEDULER_INTERVAL_S must be greater than 0")
        if self.retention_scheduler_batch_size < 1:
            raise ValueError("RETENTION_SCHEDULER_BATCH_SIZE must be at least 1")
        if self.retention_confirmation_timeout_s <= 0:
            raise ValueError("RETENTION_CONFIRMATION_TIMEOUT_S must be greater than 0")
        return self

    def policy(self) -> Policy:
        return Policy.validated(self.retention_grace_days, self.retention_disposition_days)
