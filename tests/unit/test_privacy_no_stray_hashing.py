"""SPEC §9, issue 15: only the privacy kernel hashes personal values. An unkeyed hash of an
email or phone gives the value back (every Finnish mobile number hashes in minutes), so any
other hashing in services/ or shared/ must be on an allow-list saying why it is not personal."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HASHING_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(?:hashlib|hmac|_hashlib|_sha2|_sha256|_md5|_blake2|zlib"
    r"|cryptography\.hazmat\.primitives(?:\.hashes|\.hmac)?|Crypto\.Hash)\b", re.MULTILINE)
SQL_HASHING = re.compile(r"\b(?:sha224|sha256|sha384|sha512|md5|digest|hmac|crypt)\s*\(", re.IGNORECASE)

ALLOWED_PYTHON = {
    # SHA-256 of a migration file's SQL text: its checksum, to refuse an edited migration.
    "shared/db.py",
    # Ed25519 signatures of command envelopes (SPEC §9): a signature, not a digest anyone can
    # invert; commands carry ids, and the key is secret.
    "shared/messaging/signing.py",
    # Ed25519 signatures of the AsyncAPI document's example commands (issue 17), with a published
    # example key over invented example data.
    "shared/messaging/examples.py",
    # SHA-256 of a whole rendered e-invoice document (its integrity reference in invoice-issued):
    # the document holds invoice numbers, amounts and dates as well, so it cannot be guessed.
    "services/billing/einvoice.py",
    # HMAC of the portal's OpenID Connect flow state under the portal's own secret: random
    # protocol values, no personal data.
    "services/portal/oidc.py",
    # SHA-256 of random session tokens (what the session table keeps instead of the token).
    "services/portal/sessions.py",
    # SHA-256 of a published privacy-notice text: its identity (the text is public, SPEC §10).
    "services/consent/proof.py",
    # Salted SHA-256 of a random one-time identity code (10 minutes, 5 tries): a credential of
    # the request, not a personal value.
    "services/contacts/identity_codes.py",
}
ALLOWED_SQL = {
    # Finds which of the old unkeyed digests contacts can re-digest under the key; it computes
    # nothing new: the plain values are in contacts' own tables already.
    "services/contacts/migrations/0003_keyed_suppression_digests.sql",
}


def _files(pattern: str) -> list[Path]:
    return [p for d in ("services", "shared") for p in sorted((ROOT / d).rglob(pattern))
            if "privacy" not in p.relative_to(ROOT).parts[:2]]


def test_no_python_module_outside_the_kernel_hashes_except_the_allowed_ones():
    hashing = {str(p.relative_to(ROOT)) for p in _files("*.py") if HASHING_IMPORT.search(p.read_text())}
    assert hashing == ALLOWED_PYTHON, f"hashing outside shared/privacy/: {sorted(hashing - ALLOWED_PYTHON)}"


def test_no_migration_hashes_in_sql_except_the_allowed_one():
    hashing = {str(p.relative_to(ROOT)) for p in _files("*.sql")
               if SQL_HASHING.search(re.sub(r"--[^\n]*", "", p.read_text()))}
    assert hashing == ALLOWED_SQL, f"hashing in SQL: {sorted(hashing - ALLOWED_SQL)}"


def test_the_kernel_is_where_contact_points_are_hashed():
    kernel = (ROOT / "shared" / "privacy" / "digests.py").read_text()
    assert HASHING_IMPORT.search(kernel) and "hmac" in kernel
