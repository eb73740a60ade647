"""Finding 3 (issue 16): bodies are bounded per route (1 MiB; `POST /events/{topic}` 16 MiB)
and answered 413 before parsing; a guarded route authenticates before it reads the body, so
without a token the answer is 401 whatever the body (SPEC §7)."""
from __future__ import annotations

import uuid

from tests.helpers import auth
from tests.security.conftest import USER

MIB = 1024 * 1024


async def test_no_token_is_401_whatever_the_body(contacts):
    malformed = await contacts.http.post("/persons", content=b"{not json",
                                         headers={"content-type": "application/json"})
    assert malformed.status_code == 401 and malformed.json()["error"] == "unauthenticated"
    huge = await contacts.http.post("/persons", content=b"[" + b"1," * MIB + b"1]",
                                    headers={"content-type": "application/json"})
    assert huge.status_code == 401
    invalid = await contacts.http.post("/persons", json={"first_name": 7})
    assert invalid.status_code == 401


async def test_a_body_over_one_mebibyte_is_413_before_parsing(contacts):
    body = b'{"first_name": "' + b"a" * (MIB + 10) + b'"}'
    declared = await contacts.http.post("/persons", content=body, headers={**USER, "content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"] == "too_large"
    login = await contacts.http.post("/auth/login", content=body, headers={"content-type": "application/json"})
    assert login.status_code == 413  # unauthenticated routes are bounded too

    async def chunks():
        for _ in range(20):
            yield b"a" * (64 * 1024)

    streamed = await contacts.http.post("/persons", content=chunks(),
                                        headers={**USER, "content-type": "application/json"})
    assert streamed.status_code == 413  # no Content-Length: the streamed bytes are counted


async def test_the_event_accept_takes_up_to_sixteen_mebibytes(contacts):
    service = auth("service", user="crm")
    events = [{"id": str(uuid.uuid4()), "padding": "x" * 1000} for _ in range(2000)]  # about 2 MiB
    big = await contacts.http.post("/events/contact-upserted", json={"events": events}, headers=service)
    assert big.status_code == 202, big.text[:300]  # each envelope rejected, the batch accepted
    too_big = await contacts.http.post("/events/contact-upserted", content=b"x" * (16 * MIB + 1),
                                       headers={**service, "content-type": "application/json"})
    assert too_big.status_code == 413
