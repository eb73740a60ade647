"""Settings read once at start-up from environment variables (SPEC §7).

Defaults are the embedded stack's values, so `make run` needs no configuration.
Each service subclasses `ServiceSettings` for what only it needs.
"""
from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.privacy.config import master_keys, suppression_keyring
from shared.privacy.crypto import MasterKeys
from shared.privacy.digests import SuppressionKeyring

SERVICE_NAMES = ("contacts", "consent", "retention", "billing")
# What `rekisteri serve` runs in a container: the four services and the web front end (issue 19),
# which owns no personal data and consumes no topic.
SERVED_NAMES = (*SERVICE_NAMES, "portal")
DEV_TOKEN_SECRET = "rekisteri-embedded-dev-secret-change-me-in-production"
MIN_SECRET_BYTES = 32
# Known public values that must never sign tokens outside the embedded stack.
PUBLIC_SECRETS = frozenset({DEV_TOKEN_SECRET, "CHANGE-ME", "change-me", "changeme", "secret"})


class InsecureConfiguration(RuntimeError):
    """A production process was given a development or too-short secret; names the variable."""


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
    # Command signatures (SPEC §9, shared/messaging/signing.py): this service's Ed25519 seed and
    # every publisher's public key, or a keyring file of every seed (embedded stack, compose).
    rekisteri_signing_key: str = ""
    rekisteri_signing_public_keys: str = ""
    rekisteri_signing_keyring: str = ""
    # Kafka TLS and SASL (production): PLAINTEXT on the embedded stack.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    # PostgreSQL TLS: added to DATABASE_URL as `sslmode` (and `sslrootcert`) when the URL has none.
    database_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    database_sslrootcert: str | None = None
    rekisteri_token_secret: str = DEV_TOKEN_SECRET
    # Set by `rekisteri up` only: the embedded stack may run on the public development secret.
    rekisteri_dev_stack: bool = False
    rekisteri_token_issuer: str = "rekisteri"
    rekisteri_token_ttl_s: int = 8 * 3600
    # Longest lifetime (exp - iat) a token may have; a longer one is refused (issue 16).
    rekisteri_token_max_staff_s: int = 12 * 3600
    rekisteri_token_max_service_s: int = 30 * 24 * 3600
    log_level: str = "INFO"
    db_pool_min: int = 1
    db_pool_max: int = 10
    # Every pool acquire gives up after this long instead of waiting forever.
    db_acquire_timeout_s: float = Field(default=10.0, gt=0)
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 0.25
    outbox_retention_days: int = 7
    # Dead letters (raw events, personal data) are deleted this long after they were stored (issue 15).
    dead_letter_retention_days: int = Field(default=7, ge=1)
    consumer_max_attempts: int = 3
    # Bulk topics: batch transactions applied at once (offsets still committed in order).
    batch_transactions_in_flight: int = Field(default=2, ge=1)
    # Embedded stack only: the memory-only broker frees nothing, so past this resident size
    # the launcher drains it (every consumer group caught up) and restarts it (SPEC §8).
    rekisteri_broker_memory_cap_mb: int = 1024
    rekisteri_broker_drain_timeout_s: float = 60.0
    http_host: str = "127.0.0.1"
    # Peers whose X-Forwarded-For / X-Forwarded-Proto the HTTP server believes (uvicorn's
    # forwarded_allow_ips: comma-separated addresses or networks, "*" for any): the client
    # address every service sees (login rate limits, consent's proof, issue 14) comes from it.
    http_forwarded_allow_ips: str = "127.0.0.1"
    # Request bodies past these sizes are answered 413 before they are parsed (issue 16).
    http_max_body_bytes: int = 1024 * 1024
    http_max_event_body_bytes: int = 16 * 1024 * 1024
    # Other routes with a larger limit, "METHOD path" → bytes (a 100,000-entry batch check).
    http_route_body_limits: dict[str, int] = {"POST /checks/batch": 8 * 1024 * 1024}
    contacts_port: int = 8001
    consent_port: int = 8002
    retention_port: int = 8003
    billing_port: int = 8004
    portal_port: int = 8000

    def port_of(self, service_name: str) -> int:
        return getattr(self, f"{service_name}_port", 0)

    @model_validator(mode="after")
    def _database_tls(self) -> PlatformSettings:
        """`DATABASE_SSLMODE` / `DATABASE_SSLROOTCERT` become URL parameters, which asyncpg
        honours on every connection (pools, the relay's LISTEN connection, the CLI)."""
        params = []
        if self.database_sslmode and "sslmode=" not in self.database_url:
            params.append(f"sslmode={self.database_sslmode}")
        if self.database_sslrootcert and "sslrootcert=" not in self.database_url:
            params.append(f"sslrootcert={self.database_sslrootcert}")
        if params:
            joiner = "&" if "?" in self.database_url else "?"
            self.database_url = self.database_url + joiner + "&".join(params)
        return self

    def token_max_lifetime_s(self, role: str) -> int:
        return self.rekisteri_token_max_service_s if role == "service" else self.rekisteri_token_max_staff_s

    def check_secrets(self) -> None:
        """Refuse the public development secret or a short one outside `rekisteri up` (issue 16)."""
        if self.rekisteri_dev_stack:
            return
        secret = self.rekisteri_token_secret
        if secret in PUBLIC_SECRETS:
            raise InsecureConfiguration(
                "REKISTERI_TOKEN_SECRET is the public development value: set a random secret of at least "
                f"{MIN_SECRET_BYTES} bytes (only `rekisteri up` may run on the development secret)")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise InsecureConfiguration(f"REKISTERI_TOKEN_SECRET is shorter than {MIN_SECRET_BYTES} bytes")

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client (producers, consumers, admin clients)."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile:
                context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            options["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL_"):
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise InsecureConfiguration("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with "
                                            f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}")
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password)
        return options


class ServiceSettings(PlatformSettings):
    """Settings of one service process; `service_name` picks its schema and port."""

    # A key that fails validation is never echoed in the error.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    service_name: str = "service"
    # SPEC §9: 32 bytes each, base64 or hex, never derived from another secret. `rekisteri up`
    # generates development keys into its data directory; elsewhere a service will not start
    # without them. Old keys (comma-separated) stay listed while anything stored names them:
    # a re-keyed digest chain (docs/PRIVACY.md) or a data key not yet re-wrapped.
    rekisteri_suppression_key: str = Field(default="", repr=False)
    rekisteri_suppression_old_keys: str = Field(default="", repr=False)
    rekisteri_master_key: str = Field(default="", repr=False)
    rekisteri_master_old_keys: str = Field(default="", repr=False)

    @model_validator(mode="after")
    def _keys_are_given(self) -> ServiceSettings:
        self.suppression_keyring()  # KeyConfigurationError names the variable, never the value
        self.master_keys()
        return self

    def suppression_keyring(self) -> SuppressionKeyring:
        return suppression_keyring(self.rekisteri_suppression_key, self.rekisteri_suppression_old_keys)

    def master_keys(self) -> MasterKeys:
        return master_keys(self.rekisteri_master_key, self.rekisteri_master_old_keys)

    @property
    def schema(self) -> str:  # type: ignore[override]  # shadows pydantic v1's deprecated schema(), never called
        """Each service owns one PostgreSQL schema, named after it."""
        return self.service_name

    @property
    def port(self) -> int:
        return self.port_of(self.service_name)
