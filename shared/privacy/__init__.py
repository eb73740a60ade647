"""The privacy kernel (SPEC §9): the one place that normalises contact points, digests them
under a key, and seals personal fields under per-person data keys. Pure but for the key
store and the suppression-chain registry, which read the database they are given."""
from shared.privacy.client_address import client_network
from shared.privacy.contact_points import (
    InvalidContactPoint, email_or_none, normalise_email, normalise_phone, phone_or_none,
)
from shared.privacy.crypto import (
    DataKey, KeyDestroyed, KeyNotFound, KeyStoreUnavailable, LocalMasterKey, MasterKey, MasterKeys,
    UndecryptableValue, is_sealed, open_sealed, seal,
)
from shared.privacy.digests import (
    ContactPointDigests, StoredDigest, SuppressionChains, SuppressionKeyring, UnknownSuppressionKey,
)
from shared.privacy.keys import KeyConfigurationError, generate_key, parse_key
from shared.privacy.keystore import CachingKeyStore, KeyStore, MemoryKeyStore, PostgresKeyStore

__all__ = [
    "CachingKeyStore", "ContactPointDigests", "DataKey", "InvalidContactPoint", "KeyConfigurationError",
    "KeyDestroyed", "KeyNotFound", "KeyStore", "KeyStoreUnavailable", "LocalMasterKey", "MasterKey", "MasterKeys",
    "MemoryKeyStore", "PostgresKeyStore", "StoredDigest", "SuppressionChains", "SuppressionKeyring",
    "UndecryptableValue", "UnknownSuppressionKey", "client_network", "email_or_none", "generate_key", "is_sealed", "normalise_email",
    "normalise_phone", "open_sealed", "parse_key", "phone_or_none", "seal",
]
