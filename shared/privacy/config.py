"""The register's keys built from their settings (`REKISTERI_SUPPRESSION_KEY`,
`REKISTERI_MASTER_KEY` and the old keys kept during a rotation)."""
from __future__ import annotations

from shared.privacy.crypto import LocalMasterKey, MasterKeys
from shared.privacy.digests import SuppressionKeyring
from shared.privacy.keys import parse_key, parse_key_list


def suppression_keyring(current: str, old: str = "") -> SuppressionKeyring:
    return SuppressionKeyring(parse_key("REKISTERI_SUPPRESSION_KEY", current),
                              parse_key_list("REKISTERI_SUPPRESSION_OLD_KEYS", old))


def master_keys(current: str, old: str = "") -> MasterKeys:
    return MasterKeys(LocalMasterKey(parse_key("REKISTERI_MASTER_KEY", current)),
                      [LocalMasterKey(k) for k in parse_key_list("REKISTERI_MASTER_OLD_KEYS", old)])
