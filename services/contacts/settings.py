"""Settings of the contacts service, read once at start-up."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


class ContactsSettings(ServiceSettings):
    service_name: str = "contacts"
    # argon2id cost (R3: slow salted hash). Defaults are argon2-cffi's RFC 9106 "low memory" profile.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Most persons a search answers with; an export page at most `export_page_max`.
    search_limit: int = 200
    export_page_max: int = 1000
    # Self-service logins, activations and password checks: token buckets per client IP and
    # per username (in-process; see shared/web/ratelimit.py for several replicas).
    login_burst_per_ip: int = 20
    login_per_minute_per_ip: float = 20
    login_burst_per_username: int = 10
    login_per_minute_per_username: float = 5
    # An activation code is valid this long (single use).
    activation_code_ttl_s: int = 72 * 3600
    # R12: after this long without every service's slice, an access request reports them as late.
    contacts_access_report_timeout_s: float = 30.0
    # How stale the list of suppression key chains in use may be (SPEC §9, docs/PRIVACY.md).
    suppression_chain_ttl_s: float = 1.0
    # The controller and its representative (GDPR Art. 30(1)(a)), printed in the record of
    # processing. The defaults are the embedded stack's placeholders: set them in production.
    controller_name: str = "Example ICT Oy"
    controller_business_id: str = "1234567-1"
    controller_address: str = "Esimerkkikatu 1, 00100 Helsinki"
    controller_contact: str = "tietosuoja@example.fi"
    controller_representative: str = "Register owner (rekisterin vastuuhenkilö)"
    controller_representative_contact: str = "rekisteri@example.fi"


def contacts_settings(runtime: ServiceRuntime) -> ContactsSettings:
    """The runtime's settings, typed as contacts's: its app builds the runtime with them."""
    return cast(ContactsSettings, runtime.settings)
