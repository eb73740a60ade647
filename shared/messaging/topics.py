"""The topic catalogue (SPEC §4): every topic's name, key, payload, and how it is kept.

This is the contract with the company's other systems. `rekisteri topics` creates this
set, the AsyncAPI documents are generated from it, and producers refuse a topic or a
payload it does not know.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from shared.messaging import events as ev

DAY_MS = 24 * 3600 * 1000


# A bulk consumer asks for 256 KiB and the broker answers when it has them or after this wait:
# a few fetches a second while idle, not a hundred (the per-person topics' 10 ms wait, for
# latency, cost every service a share of a core in fetch responses decoded for nothing).
BULK_FETCH_WAIT_MS = 200


@dataclass(frozen=True)
class Topic:
    name: str
    payload: type[ev.Payload]
    key: str  # the payload field whose order matters
    description: str
    personal_data: bool
    partitions: int = 3
    retention_ms: int = 7 * DAY_MS
    schema_version: int = 1
    # A bulk consumer's fetch wait (throughput); per-event consumers use the service's setting
    # `kafka_fetch_max_wait_ms` (latency).
    fetch_max_wait_ms: int = BULK_FETCH_WAIT_MS
    producers: tuple[str, ...] = field(default_factory=tuple)
    consumers: tuple[str, ...] = field(default_factory=tuple)
    # Consumers that apply this topic in bulk batches, in a consumer group of its own
    # (`ServiceRuntime.subscribe_batch`); the others share their service's one group.
    bulk_consumers: tuple[str, ...] = field(default_factory=tuple)

    def consumer_group(self, service: str) -> str:
        """The Kafka group id `service` consumes this topic in: `<service>` for its per-event
        topics (one group join), `<service>.<topic>` for a bulk topic."""
        return f"{service}.{self.name}" if service in self.bulk_consumers else service
    # Crypto-shredding (SPEC §9, issue 15): the payload fields the register's own producers seal
    # under the subject's data key, and the fields that name the subject, first present wins
    # (the event's own id when none is: a ban naming only contact points). docs/PRIVACY.md.
    sealed_fields: tuple[str, ...] = ()
    seal_subject: tuple[str, ...] = ("person_id",)

    @property
    def dead_letter(self) -> str:
        return dead_letter_topic(self.name)


def dead_letter_topic(name: str) -> str:
    return f"{name}-dlq"


EXTERNAL = "other company systems"

_TOPICS = [
    Topic("contact-upserted", ev.ContactUpserted, "external_ref",
          "A person from CRM or a B2B/public register import (R4).", True,
          producers=(EXTERNAL,), consumers=("contacts",)),
    Topic("contact-registered", ev.ContactRegistered, "person_id",
          "A person entered the register.", True, sealed_fields=("emails", "phones"),
          producers=("contacts",), consumers=("consent", "retention")),
    Topic("contact-updated", ev.ContactUpdated, "person_id",
          "A person's data changed (update, self-service, rectification R14).", True,
          sealed_fields=("emails", "phones"), producers=("contacts",), consumers=("consent",)),
    Topic("contact-passivated", ev.ContactPassivated, "person_id",
          "A person's data is now readable only by the register owner (R6).", False,
          producers=("contacts",), consumers=("retention", "consent")),
    Topic("contact-reactivated", ev.ContactReactivated, "person_id",
          "A passive or ended person became active again.", False,
          producers=("contacts",), consumers=("retention", "consent")),
    Topic("contact-erased", ev.ContactErased, "person_id",
          "All of a person's data is erased everywhere, bans' suppression kept (R7, R8); `naming`"
          " (keyed digests of the contact points, sealed) finds the person's dead letters.", True,
          sealed_fields=("naming",), producers=("contacts",), consumers=("consent", "retention", "billing"),
          bulk_consumers=("retention",)),
    Topic("contact-transferred-to-marketing", ev.ContactTransferredToMarketing, "person_id",
          "A person moved to the marketing register (R7, R9).", False,
          producers=("contacts",), consumers=("consent", "retention")),
    Topic("subject-tokens-revoked", ev.SubjectTokensRevoked, "person_id",
          "A person's self-service tokens before a version, or all of them, are revoked: consent"
          " refuses them as contacts does (issue 16).", False,
          producers=("contacts",), consumers=("consent",)),
    Topic("notification-requested", ev.NotificationRequested, "person_id",
          "A message for the company's mailer to deliver to a person: an account's activation code, a"
          " request's extension, an identity code.", True, sealed_fields=("parameters", "code"),
          retention_ms=1 * DAY_MS, producers=("contacts",), consumers=(EXTERNAL,)),
    Topic("relationship-started", ev.RelationshipStarted, "person_id",
          "A customer relationship or legitimate connection began (R5).", False,
          producers=("contacts", EXTERNAL), consumers=("contacts", "retention")),
    Topic("relationship-ended", ev.RelationshipEnded, "person_id",
          "A customer relationship or legitimate connection ended (R6).", False,
          producers=("contacts", EXTERNAL), consumers=("contacts", "retention")),
    Topic("assignment-started", ev.AssignmentStarted, "person_id",
          "A person began working on an assignment (P2).", False,
          producers=("contacts", EXTERNAL), consumers=("contacts", "retention")),
    Topic("assignment-ended", ev.AssignmentEnded, "person_id",
          "A person's assignment ended; the R7 deadline counts from the last one.", False,
          producers=("contacts", EXTERNAL), consumers=("contacts", "retention")),
    Topic("optout-registered", ev.OptoutRegistered, "person_id",
          "A marketing ban per purpose and channel (R8, R13).", True, sealed_fields=("emails", "phones"),
          producers=("consent", "contacts", EXTERNAL), consumers=("consent", "retention", "contacts")),
    Topic("consent-granted", ev.ConsentGranted, "person_id",
          "A marketing permission was given.", False,
          producers=("consent",), consumers=("retention",)),
    Topic("consent-withdrawn", ev.ConsentWithdrawn, "person_id",
          "A marketing permission was withdrawn or a ban recorded.", False,
          producers=("consent",), consumers=("retention",)),
    Topic("passivation-commanded", ev.PassivationCommanded, "person_id",
          "Retention commands contacts to passivate a person (R6).", False,
          producers=("retention",), consumers=("contacts",)),
    Topic("disposition-commanded", ev.DispositionCommanded, "person_id",
          "Retention commands the final disposition: erase or transfer (R7).", False,
          producers=("retention",), consumers=("contacts",)),
    Topic("disposition-confirmed", ev.DispositionConfirmed, "person_id",
          "A service confirms it honoured a passivation or disposition.", False,
          producers=("contacts", "consent", "billing", "retention"), consumers=("retention",),
          bulk_consumers=("retention",)),
    Topic("erasure-requested", ev.ErasureRequested, "person_id",
          "The register owner decided to erase a person on their request (Art. 17): retention makes"
          " the erasure due now, legal holds in force still applying (Art. 17(3), issue 14).", False,
          producers=("contacts",), consumers=("retention",)),
    Topic("access-requested", ev.AccessRequested, "request_id",
          "A right-of-access request (R12): every service answers with its slice; or a portability"
          " export (Art. 20), answered by the services it names.", True,
          retention_ms=1 * DAY_MS, sealed_fields=("emails", "phones"), seal_subject=("person_id", "request_id"),
          producers=("contacts",), consumers=("consent", "retention", "billing")),
    Topic("access-report-part", ev.AccessReportPart, "request_id",
          "One service's slice of an access report (R12).", True, retention_ms=1 * DAY_MS,
          sealed_fields=("items",), seal_subject=("person_id", "request_id"),
          producers=("consent", "retention", "billing"), consumers=("contacts",)),
    Topic("usage-recorded", ev.UsageRecorded, "customer_id",
          "Metered use of a delivered service, from the company's platforms (P3).", False,
          partitions=6,
          producers=(EXTERNAL,), consumers=("billing",), bulk_consumers=("billing",)),
    Topic("invoice-issued", ev.InvoiceIssued, "customer_id",
          "An immutable invoice or credit note (SPEC §6).", False,
          producers=("billing",), consumers=(EXTERNAL,)),
    Topic("payment-received", ev.PaymentReceived, "reference",
          "A payment from the bank integration, matched to an invoice by its reference (issue 18).", False,
          producers=(EXTERNAL,), consumers=("billing",)),
    Topic("rekisteri-broker-incarnation", ev.BrokerIncarnation, "incarnation",
          "Embedded stack only: a new value means the memory-only broker restarted (SPEC §8).",
          False, partitions=1, producers=("launcher",), consumers=("contacts", "consent", "retention", "billing")),
]

CATALOGUE: dict[str, Topic] = {t.name: t for t in _TOPICS}

for _t in _TOPICS:  # what names the key or the subject travels in plain; only personal topics seal
    assert not (set(_t.sealed_fields) & {_t.key, *_t.seal_subject}), _t.name
    assert _t.personal_data or not _t.sealed_fields, _t.name
    assert set(_t.sealed_fields) <= set(_t.payload.model_fields), _t.name
EVENT_TYPES: dict[type[ev.Payload], Topic] = {t.payload: t for t in _TOPICS}


def topic(name: str) -> Topic:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"topic {name!r} is not in the catalogue") from None


def all_topic_names(include_dead_letters: bool = True) -> list[str]:
    """Every topic the register uses, dead-letter topics for consumed ones included."""
    names = list(CATALOGUE)
    if include_dead_letters:
        names += [t.dead_letter for t in _TOPICS if t.consumers and t.consumers != (EXTERNAL,)]
    return names
