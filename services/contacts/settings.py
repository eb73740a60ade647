"""Settings of the contacts service, read once at start-up."""
from __future__ import annotations

from shared.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    service_name: str = "contacts"
    # argon2id cost (R3: slow salted hash). Defaults are argon2-cffi's RFC 9106 "low memory" profile.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Most persons a search or an export answers with.
    search_limit: int = 200
    # R12: after this long without every service's slice, an access request reports them as late.
    contacts_access_report_timeout_s: float = 30.0
    # The controller and its representative (GDPR Art. 30(1)(a)), printed in the record of
    # processing. The defaults are the embedded stack's placeholders: set them in production.
    controller_name: str = "Example ICT Oy"
    controller_business_id: str = "1234567-1"
    controller_address: str = "Esimerkkikatu 1, 00100 Helsinki"
    controller_contact: str = "tietosuoja@example.fi"
    controller_representative: str = "Register owner (rekisterin vastuuhenkilö)"
    controller_representative_contact: str = "rekisteri@example.fi"
