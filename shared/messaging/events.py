"""Payload models (the envelope's `data`) of every catalogued topic, versioned.

Events carry ids and only the personal fields a consumer needs (SPEC §4). Each model
forbids unknown fields so a malformed event is dead-lettered with a reason instead of
being half-understood. A payload change that breaks consumers gets a new schema_version.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Purpose(StrEnum):
    """Marketing purposes a person can permit or ban (R13)."""

    direct_advertising = "direct_advertising"
    distance_selling = "distance_selling"
    other_direct_marketing = "other_direct_marketing"
    opinion_and_market_research = "opinion_and_market_research"


class Channel(StrEnum):
    email = "email"
    phone = "phone"
    sms = "sms"
    post = "post"


class ProcessingPurpose(StrEnum):
    """Why data is processed (R1): P1 customer relationship, P2 assignments, P3 billing."""

    customer_relationship = "customer_relationship"
    assignments = "assignments"
    usage_billing = "usage_billing"


class LegalBasis(StrEnum):
    """R2."""

    customer_relationship = "customer_relationship"
    legitimate_connection = "legitimate_connection"
    consent = "consent"
    assignment = "assignment"


class DataSource(StrEnum):
    """Where a field came from (R4)."""

    person_meeting = "person_meeting"
    person_phone = "person_phone"
    person_web = "person_web"
    person_email = "person_email"
    self_service = "self_service"
    service_event = "service_event"
    published_source = "published_source"
    b2b_register = "b2b_register"
    public_register = "public_register"
    private_register = "private_register"
    staff = "staff"


# ---- contacts -------------------------------------------------------------------------

# Capped before anything reads them (issue 16 finding 2): the schema refuses an over-long
# value or list before the privacy kernel's normalisers, let alone a pattern, see it.
MAX_CONTACT_POINTS = 100
EmailText = Annotated[str, StringConstraints(max_length=254)]
PhoneText = Annotated[str, StringConstraints(max_length=32)]


class ContactPoints(Payload):
    """Normalised contact points: what consent needs to honour a ban (R8)."""

    emails: list[EmailText] = Field(default_factory=list, max_length=MAX_CONTACT_POINTS)
    phones: list[PhoneText] = Field(default_factory=list, max_length=MAX_CONTACT_POINTS)


class ContactUpserted(ContactPoints):
    """A person from another system: CRM, or an import from a B2B register (R4)."""

    external_ref: str = Field(min_length=1, max_length=200)
    source: DataSource
    first_name: str = Field(min_length=1, max_length=200)
    last_name: str = Field(min_length=1, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    organisation_business_id: str | None = Field(default=None, max_length=20)
    organisation_name: str | None = Field(default=None, max_length=300)
    purposes: list[ProcessingPurpose] = Field(default_factory=lambda: [ProcessingPurpose.customer_relationship])
    legal_basis: LegalBasis = LegalBasis.legitimate_connection


class ContactRegistered(ContactPoints):
    person_id: uuid.UUID
    source: DataSource
    lifecycle_state: str
    organisation_id: uuid.UUID | None = None


class ContactUpdated(ContactPoints):
    person_id: uuid.UUID
    changed_fields: list[str]
    cause: Literal["update", "self_service", "rectification", "import"] = "update"
    rectification_id: uuid.UUID | None = None


class PersonRef(Payload):
    person_id: uuid.UUID


class ContactPassivated(PersonRef):
    command_id: uuid.UUID | None = None


class ContactReactivated(PersonRef):
    pass


# A keyed digest of a contact point (`shared.privacy.naming`): the key's id, a colon, 64 hex digits.
NamingToken = Annotated[str, StringConstraints(max_length=100, pattern=r"^[0-9a-zA-Z_-]{1,32}:[0-9a-f]{64}$")]
MAX_NAMING_TOKENS = 1000  # 2 x MAX_CONTACT_POINTS points under the keys a ring knows during a rotation


class ContactErased(PersonRef):
    """Erasure across all services (R7). Ids, and `naming`: keyed digests of the person's
    emails and phones (sealed under the person's data key, so shredded with it), by which a
    service that never held the values finds the person's dead letters (issue 15, H1)."""

    command_id: uuid.UUID | None = None
    naming: list[NamingToken] = Field(default_factory=list, max_length=MAX_NAMING_TOKENS)


class ContactTransferredToMarketing(PersonRef):
    command_id: uuid.UUID | None = None


class SubjectTokensRevoked(PersonRef):
    """The person's self-service tokens issued before `token_version` are dead (a password
    change or activation), or all of them (`disabled`): every service that accepts subject
    tokens refuses them from now on (issue 16 finding 7). Ids and counters only."""

    token_version: int = Field(ge=0)
    disabled: bool = False


class RelationshipStarted(Payload):
    person_id: uuid.UUID
    relationship_id: uuid.UUID
    organisation_id: uuid.UUID | None = None
    kind: Literal["customer", "prospect"]
    started_at: AwareDatetime


class RelationshipEnded(Payload):
    person_id: uuid.UUID
    relationship_id: uuid.UUID
    ended_at: AwareDatetime


class AssignmentStarted(Payload):
    """One event per participant, keyed by the participant's person id."""

    person_id: uuid.UUID
    assignment_id: uuid.UUID
    given_by: Literal["principal", "partner", "customer"]
    started_at: AwareDatetime


class AssignmentEnded(Payload):
    person_id: uuid.UUID
    assignment_id: uuid.UUID
    ended_at: AwareDatetime


# ---- consent --------------------------------------------------------------------------

class OptoutRegistered(ContactPoints):
    """A marketing ban (R8, R13). Names a person, contact points, or both."""

    person_id: uuid.UUID | None = None
    purposes: list[Purpose] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=lambda: list(Channel))
    source: str = Field(min_length=1, max_length=200)
    method: str = Field(default="unspecified", max_length=100)
    actor: str = Field(default="unknown", max_length=200)
    notice_version: str | None = Field(default=None, max_length=50)


class ConsentChanged(Payload):
    person_id: uuid.UUID
    purpose: Purpose
    channel: Channel
    source: str
    method: str
    actor: str


class ConsentGranted(ConsentChanged):
    pass


class ConsentWithdrawn(ConsentChanged):
    pass


# ---- retention ------------------------------------------------------------------------

class PassivationCommanded(Payload):
    """Retention → contacts: restrict this person's data to the register owner (R6)."""

    command_id: uuid.UUID
    person_id: uuid.UUID
    basis: str


class DispositionCommanded(Payload):
    """Retention → contacts: erase, or move to the marketing register (R7)."""

    command_id: uuid.UUID
    person_id: uuid.UUID
    action: Literal["erase", "transfer_to_marketing"]
    basis: str


class DispositionConfirmed(Payload):
    """Each service confirms it honoured a passivation or disposition."""

    command_id: uuid.UUID | None = None
    person_id: uuid.UUID
    service: str
    action: Literal["passivate", "erase", "transfer_to_marketing"]
    confirmed_at: AwareDatetime


# ---- data-subject rights --------------------------------------------------------------

class ErasureRequested(Payload):
    """Contacts → retention: the register owner decided to erase the person on their request
    (Art. 17, issue 14); retention makes the erasure due now, legal holds still in force."""

    person_id: uuid.UUID
    request_id: uuid.UUID


RightsPurpose = Literal["access", "portability"]


class AccessRequested(ContactPoints):
    """R12: every service answers with its slice of the person's data. A portability export
    (Art. 20, issue 14) asks the same way, naming in `services` the only ones that answer
    (empty: every consumer), and each answers with what the person provided to it."""

    request_id: uuid.UUID
    person_id: uuid.UUID | None = None
    purpose: RightsPurpose = "access"
    services: list[Annotated[str, StringConstraints(max_length=40)]] = Field(default_factory=list, max_length=10)


class AccessReportPart(Payload):
    request_id: uuid.UUID
    service: str
    person_id: uuid.UUID | None = None
    purpose: RightsPurpose = "access"  # the request's, echoed: which collection the part belongs to
    items: list[dict[Any, Any]] = Field(default_factory=list)


class NotificationRequested(Payload):
    """A message the company's mailer delivers to the person by their own contact points: an
    account's single-use activation code with which they set their own password (SPEC §7;
    staff never do), an extension of a request's deadline and its reason (Art. 12(3)), or the
    one-time code that verifies the identity of a request made by email or phone.
    `parameters` fill the template; an activation carries its `code` and `expires_at`."""

    person_id: uuid.UUID
    template: Literal["account-activation", "request-extended", "identity-code"]
    parameters: dict[str, str] = Field(default_factory=dict, max_length=10)
    code: str | None = Field(default=None, min_length=16, max_length=64)
    expires_at: AwareDatetime | None = None


# ---- billing --------------------------------------------------------------------------

class UsageRecorded(Payload):
    """A metered use of a delivered service (P3). The envelope's (source, id) dedupes it."""

    customer_id: uuid.UUID
    person_id: uuid.UUID | None = None
    meter: str = Field(min_length=1, max_length=100)
    quantity: Decimal
    time: AwareDatetime
    dimensions: dict[str, str] = Field(default_factory=dict)


class EInvoiceDocumentRef(Payload):
    """An e-invoice document of an issued invoice (issue 18)."""

    format: Literal["finvoice", "ubl"]
    href: str = Field(max_length=300)  # the billing API path that serves it
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class InvoiceIssued(Payload):
    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    kind: Literal["invoice", "credit_note"] = "invoice"
    net: Decimal
    vat: Decimal
    gross: Decimal
    currency: Literal["EUR"] = "EUR"
    issued_at: datetime
    # Issue 18, optional so earlier events still parse: the gapless number, the payment
    # reference, the due date and the e-invoice documents (format, where to fetch, digest).
    invoice_number: str | None = Field(default=None, max_length=35)
    reference: str | None = Field(default=None, max_length=35)
    due_date: date | None = None
    documents: list[EInvoiceDocumentRef] = Field(default_factory=list, max_length=4)


class PaymentReceived(Payload):
    """A payment from the bank integration (issue 18): matched to an invoice by its reference."""

    payment_id: str = Field(min_length=1, max_length=100)  # the bank's id: payments dedupe on it
    reference: str = Field(min_length=2, max_length=35)    # national reference or RF creditor reference
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    currency: Literal["EUR"] = "EUR"
    paid_on: date


class BrokerIncarnation(Payload):
    """Written by the embedded launcher each time it starts a (memory-only) broker."""

    incarnation: uuid.UUID
    started_at: AwareDatetime
    # True when the launcher restarted the broker on purpose after every consumer group had
    # caught up: nothing was lost, so services need not replay their outbox.
    previous_drained: bool = False
