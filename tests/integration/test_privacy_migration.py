"""contacts' unkeyed SHA-256 digests migrated away (SPEC §9, issue 15): migration 0003 on a
database that has them re-digests under the suppression key what contacts still holds in plain
and drops the rest; access requests get keyed digests again. Real PostgreSQL."""
from __future__ import annotations

import hashlib
import shutil
import uuid

from services.contacts import storage
from services.contacts.app import MIGRATIONS
from shared.db import create_pool, migrate
from shared.privacy import SuppressionChains
from shared.privacy.config import suppression_keyring
from shared.privacy.keys import generate_key
from tests.infra import create_database


def unkeyed(value: str) -> str:
    """What contacts stored before issue 15."""
    return hashlib.sha256(value.encode()).hexdigest()


async def test_r8_unkeyed_digests_are_redigested_where_the_value_is_held_and_dropped_elsewhere(infra, tmp_path):
    database_url = await create_database(infra)
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("000[12]_*.sql")):
        shutil.copy(path, before / path.name)
    pool = await create_pool(database_url, "contacts")
    try:
        await migrate(pool, "contacts", before)  # contacts as it was
        kept, gone, phone = "pysyva@example.fi", "poistettu@example.fi", "+358401234567"
        person, request = uuid.uuid4(), uuid.uuid4()
        await pool.execute("INSERT INTO persons (id, first_name, last_name, emails, phones, legal_basis, purposes,"
                           " lifecycle_state) VALUES ($1, 'Pysyvä', 'Henkilö', $2, $3, 'legitimate_interest',"
                           " '{customer_relationship}', 'active')", person, [kept], [phone])
        await pool.executemany("INSERT INTO suppressed_contact_points (digest, purpose) VALUES ($1, $2)",
                               [(unkeyed(kept), "direct_advertising"), (unkeyed(phone), "distance_selling"),
                                (unkeyed(gone), "direct_advertising")])
        await pool.execute("INSERT INTO access_requests (id, person_id, emails, phones, contact_digests, channel,"
                           " verified_by, requested_by, status, expected_services) VALUES ($1, NULL, $2, '{}', $3,"
                           " 'signed_letter', 'staff', 'staff', 'fulfilled', '{contacts}')",
                           request, [gone], [unkeyed(gone)])

        applied = await migrate(pool, "contacts", MIGRATIONS)
        assert "service/0003_keyed_suppression_digests.sql" in applied  # with the other migrations since 0002
        keyring = suppression_keyring(generate_key())
        async with pool.acquire() as conn, conn.transaction():
            digests = await SuppressionChains(keyring).digests(conn)
            await storage.suppression._redigest_staged(conn, digests)

        rows = {(r["digest"], r["kind"], r["purpose"]) for r in await pool.fetch(
            "SELECT digest, kind, purpose FROM suppressed_contact_points")}
        assert rows == {(keyring.digest("email", kept), "email", "direct_advertising"),
                        (keyring.digest("phone", phone), "phone", "distance_selling")}
        assert await pool.fetchval("SELECT count(*) FROM suppression_redigest") == 0  # no plain value left staged
        assert await pool.fetchval("SELECT contact_digests FROM access_requests WHERE id = $1", request) == [
            f"{keyring.current_chain}:{keyring.digest('email', gone).hex()}"]
        dump = " ".join([str(r) for t in ("suppressed_contact_points", "access_requests")
                         for r in await pool.fetch(f"SELECT * FROM {t}")])
        assert not any(unkeyed(v) in dump for v in (kept, gone, phone))
    finally:
        await pool.close()
