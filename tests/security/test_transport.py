"""Finding 8, the parts of issue 16 owned here (SPEC §9: the bus and the database over TLS
with per-service credentials): TLS and SASL settings reach every Kafka client, `sslmode`
reaches PostgreSQL, and the compose file gives each service its own database role and
publishes its ports on the loopback address only."""
from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import yaml
from faststream.security import SASLPlaintext, SASLScram512

from shared.messaging.kafka import broker_security, create_broker
from shared.settings import SERVED_NAMES, SERVICE_NAMES, InsecureConfiguration, PlatformSettings

ROOT = Path(__file__).resolve().parents[2]


def test_sasl_scram_over_tls_reaches_the_kafka_clients():
    settings = PlatformSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                                kafka_sasl_username="contacts", kafka_sasl_password="s3cret")
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("contacts", "s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    security = broker_security(settings)
    assert isinstance(security, SASLScram512) and security.use_ssl
    create_broker(settings, client_id="test")  # FastStream accepts it


def test_sasl_plain_and_plain_tls_are_available_too():
    plain = PlatformSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                             kafka_sasl_username="u", kafka_sasl_password="p")
    assert isinstance(broker_security(plain), SASLPlaintext)
    assert "ssl_context" not in plain.kafka_client_options()
    tls = PlatformSettings(kafka_security_protocol="SSL").kafka_client_options()
    assert tls["security_protocol"] == "SSL" and isinstance(tls["ssl_context"], ssl.SSLContext)
    assert broker_security(PlatformSettings()) is None  # the embedded stack: plaintext


def test_sasl_without_credentials_is_a_clear_error():
    with pytest.raises(InsecureConfiguration, match="KAFKA_SASL_USERNAME"):
        PlatformSettings(kafka_security_protocol="SASL_SSL").kafka_client_options()


def test_postgres_tls_settings_reach_the_database_url():
    settings = PlatformSettings(database_url="postgresql://contacts@db:5432/rekisteri",
                                database_sslmode="verify-full", database_sslrootcert="/etc/ssl/ca.pem")
    assert settings.database_url == ("postgresql://contacts@db:5432/rekisteri"
                                     "?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem")
    kept = PlatformSettings(database_url="postgresql://x@db/r?sslmode=require", database_sslmode="verify-full")
    assert kept.database_url == "postgresql://x@db/r?sslmode=require"


def test_compose_gives_each_service_its_own_role_and_binds_ports_to_loopback():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    roles = set()
    for name in SERVED_NAMES:  # the portal too (issue 19)
        url = compose[name]["environment"]["DATABASE_URL"]
        assert url.startswith(f"postgresql://rekisteri_{name}:"), url
        roles.add(url.split("//")[1].split(":")[0])
        assert all(port.startswith("${REKISTERI_BIND_ADDRESS:-127.0.0.1}:") for port in compose[name]["ports"])
    assert len(roles) == len(SERVED_NAMES)
    init = (ROOT / "deploy" / "postgres" / "init-roles.sql").read_text()
    for name in SERVED_NAMES:
        assert f"CREATE SCHEMA {name} AUTHORIZATION rekisteri_{name};" in init
    mounted = " ".join(compose["postgres"]["volumes"])
    assert "deploy/postgres/init-roles.sh" in mounted and "deploy/postgres/init-roles.sql" in mounted
    # The register-wide schemas come from the platform migrations' own SQL (issue 16; run on the
    # real roles by tests/integration/test_database_roles.py): the directory is mounted and named.
    assert "./shared/sql:/docker-entrypoint-initdb.d/platform-sql:ro" in compose["postgres"]["volumes"]
    assert "platform_sql=/docker-entrypoint-initdb.d/platform-sql" in (ROOT / "deploy" / "postgres" / "init-roles.sh").read_text()
    assert "GRANT DELETE ON keystore.data_key TO rekisteri_retention;" in init


def test_the_scaling_guide_lists_kafka_acls_per_service():
    guide = (ROOT / "deploy" / "SCALING.md").read_text()
    for name in SERVICE_NAMES:
        assert f"| `User:{name}` |" in guide
