"""One example message per catalogued topic, for the AsyncAPI document (issue 17).

Built from the payload models (so an example that no longer validates fails at import, not
in another team's client) and wrapped in the envelope the relay really sends. Names and
contact points are invented. Command topics' examples are signed with a published example
key (bytes 0..31, never a service's key), so their signatures verify.
"""
from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.messaging import events as ev
from shared.messaging.envelope import Envelope
from shared.messaging.signing import SIGNED_TOPICS, canonical
from shared.messaging.topics import CATALOGUE, EXTERNAL, Topic

# A published example seed (bytes 0..31): it signs the examples only, no service trusts it.
EXAMPLE_SIGNING_SEED = bytes(range(32))
TIME = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
PERSON = uuid.UUID("5f0c6d2e-8a41-4c3b-9e7d-2b1f0a9c4d11")
ORGANISATION = uuid.UUID("0b7e3f52-1c9a-4d6e-8f20-7a5b3c1d9e42")
CUSTOMER = uuid.UUID("9c2d4e6f-3b1a-4f8e-a7d5-6e4c2b0a8f13")
COMMAND = uuid.UUID("3e8a1b7c-5d2f-4a9e-b6c0-1f7d3e5a9b24")
REQUEST = uuid.UUID("7a4c2e9f-1b3d-4e5a-8c6f-0d2b4a6e8c35")
EMAIL, PHONE = "maija.meikalainen@example.com", "+358401234567"


def _payloads() -> dict[type[ev.Payload], ev.Payload]:
    consent = {"person_id": PERSON, "purpose": ev.Purpose.direct_advertising, "channel": ev.Channel.email,
               "source": "self_service", "method": "web_form", "actor": "person"}
    return {p.__class__: p for p in [
        ev.ContactUpserted(external_ref="crm:100234", source=ev.DataSource.b2b_register, first_name="Maija",
                           last_name="Meikäläinen", title="CTO", organisation_business_id="1234567-8",
                           organisation_name="Esimerkki Oy", emails=[EMAIL], phones=[PHONE]),
        ev.ContactRegistered(person_id=PERSON, source=ev.DataSource.b2b_register, lifecycle_state="active",
                             organisation_id=ORGANISATION, emails=[EMAIL], phones=[PHONE]),
        ev.ContactUpdated(person_id=PERSON, changed_fields=["emails"], cause="self_service", emails=[EMAIL]),
        ev.ContactPassivated(person_id=PERSON, command_id=COMMAND),
        ev.ContactReactivated(person_id=PERSON),
        ev.SubjectTokensRevoked(person_id=PERSON, token_version=3),
        ev.ContactErased(person_id=PERSON, command_id=COMMAND),
        ev.ContactTransferredToMarketing(person_id=PERSON, command_id=COMMAND),
        ev.NotificationRequested(person_id=PERSON, template="identity-code", code="K7Q2-M9XD-4HTA-P3WE",
                                 expires_at=TIME),
        ev.RelationshipStarted(person_id=PERSON, relationship_id=uuid.UUID(int=PERSON.int ^ 1),
                               organisation_id=ORGANISATION, kind="customer", started_at=TIME),
        ev.RelationshipEnded(person_id=PERSON, relationship_id=uuid.UUID(int=PERSON.int ^ 1), ended_at=TIME),
        ev.AssignmentStarted(person_id=PERSON, assignment_id=uuid.UUID(int=PERSON.int ^ 2), given_by="customer",
                             started_at=TIME),
        ev.AssignmentEnded(person_id=PERSON, assignment_id=uuid.UUID(int=PERSON.int ^ 2), ended_at=TIME),
        ev.OptoutRegistered(person_id=PERSON, purposes=[ev.Purpose.direct_advertising], channels=[ev.Channel.email],
                            source="self_service", method="web_form", actor="person", notice_version="2024-05"),
        ev.ConsentGranted(**consent),
        ev.ConsentWithdrawn(**consent),
        ev.PassivationCommanded(command_id=COMMAND, person_id=PERSON, basis="relationship ended 2024-03-14"),
        ev.DispositionCommanded(command_id=COMMAND, person_id=PERSON, action="erase",
                                basis="a year after the last assignment ended (R7)"),
        ev.DispositionConfirmed(command_id=COMMAND, person_id=PERSON, service="consent", action="erase",
                                confirmed_at=TIME),
        ev.ErasureRequested(person_id=PERSON, request_id=REQUEST),
        ev.AccessRequested(request_id=REQUEST, person_id=PERSON, emails=[EMAIL]),
        ev.AccessReportPart(request_id=REQUEST, service="consent", person_id=PERSON,
                            items=[{"kind": "ban", "purpose": "direct_advertising", "channel": "email"}]),
        ev.UsageRecorded(customer_id=CUSTOMER, meter="vm.cpu_hours", quantity=Decimal("12.5"), time=TIME,
                         dimensions={"region": "fi-hel1"}),
        ev.InvoiceIssued(invoice_id=uuid.UUID(int=CUSTOMER.int ^ 1), customer_id=CUSTOMER, period="2025-02",
                         net=Decimal("100.00"), vat=Decimal("25.50"), gross=Decimal("125.50"), issued_at=TIME,
                         invoice_number="2025-000123", reference="1232", due_date=date(2025, 3, 28),
                         documents=[ev.EInvoiceDocumentRef(
                             format="finvoice", href=f"/invoices/{uuid.UUID(int=CUSTOMER.int ^ 1)}/finvoice",
                             sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]),
        ev.PaymentReceived(payment_id="bank:20250320:0042", reference="1232", amount=Decimal("125.50"),
                           paid_on=date(2025, 3, 20)),
        ev.BrokerIncarnation(incarnation=uuid.UUID("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), started_at=TIME),
    ]}


def _source(spec: Topic) -> str:
    services = [p for p in spec.producers if p != EXTERNAL]
    return services[0] if services else "crm"


def example_envelope(spec: Topic) -> dict[str, Any]:
    """The envelope's JSON as the relay sends it (signed on command topics)."""
    payload = _payloads()[spec.payload]
    data = json.loads(payload.model_dump_json())
    key = data.get(spec.key)
    envelope = Envelope(id=uuid.uuid5(uuid.NAMESPACE_URL, f"rekisteri:example:{spec.name}"), type=spec.name,
                        source=_source(spec), time=TIME, subject=str(key), schema_version=spec.schema_version,
                        data=data, correlation_id="req-4f2a9c")
    body = envelope.to_json_dict()
    if spec.name in SIGNED_TOPICS:
        signature = Ed25519PrivateKey.from_private_bytes(EXAMPLE_SIGNING_SEED).sign(canonical(body))
        body["signature"] = base64.b64encode(signature).decode()
    return body


def missing_examples() -> list[str]:
    """Catalogued topics without an example (a unit test keeps this empty)."""
    known = _payloads()
    return [name for name, spec in CATALOGUE.items() if spec.payload not in known]
