"""Settings read once at start-up from environment variables (SPEC §7).

Defaults are the embedded stack's values, so `make run` needs no configuration.
Each service subclasses `ServiceSettings` for what only it needs.
"""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("contacts", "consent", "retention", "billing")
DEV_TOKEN_SECRET = "rekisteri-embedded-dev-secret-change-me-in-production"


class PlatformSettings(BaseSettings):
    """What every process of the register reads: infrastructure and security."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/rekisteri"
    # Tansu (the embedded broker) rejects InitProducerId: idempotence stays off there.
    kafka_enable_idempotence: bool = False
    kafka_acks: str = "all"
    # Half of this is what a consumer group join costs on Tansu; Apache Kafka wants >= 6000.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    # How soon a client notices topics re-created after an embedded broker restart (a consumer
    # that rejoined before they existed rejoins for them at its next metadata refresh).
    kafka_metadata_max_age_ms: int = 5000
    # Fetch wait for latency-critical person topics; bulk topics use their own (catalogue).
    kafka_fetch_max_wait_ms: int = 10
    rekisteri_token_secret: str = DEV_TOKEN_SECRET
    rekisteri_token_ttl_s: int = 8 * 3600
    log_level: str = "INFO"
    db_pool_min: int = 1
    db_pool_max: int = 10
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 0.25
    outbox_retention_days: int = 7
    consumer_max_attempts: int = 3
    # Bulk topics: batch transactions applied at once (offsets still committed in order).
    batch_transactions_in_flight: int = Field(default=2, ge=1)
    # Embedded stack only: the memory-only broker frees nothing, so past this resident size
    # the launcher drains it (every consumer group caught up) and restarts it (SPEC §8).
    rekisteri_broker_memory_cap_mb: int = 1024
    rekisteri_broker_drain_timeout_s: float = 60.0
    http_host: str = "127.0.0.1"
    contacts_port: int = 8001
    consent_port: int = 8002
    retention_port: int = 8003
    billing_port: int = 8004

    def port_of(self, service_name: str) -> int:
        return getattr(self, f"{service_name}_port", 0)


class ServiceSettings(PlatformSettings):
    """Settings of one service process; `service_name` picks its schema and port."""

    service_name: str = "service"

    @property
    def schema(self) -> str:
        """Each service owns one PostgreSQL schema, named after it."""
        return self.service_name

    @property
    def port(self) -> int:
        return self.port_of(self.service_name)
