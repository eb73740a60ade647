"""Settings of the consent service, read once at start-up."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


class ConsentSettings(ServiceSettings):
    service_name: str = "consent"
    # A ban must take effect within 25 ms of its publication (issue 4); Tansu answers a fetch
    # only when its wait expires, so consent waits less than the platform's 10 ms (bench:
    # p50 ~9 -> ~6 ms) at the cost of more idle fetches.
    kafka_fetch_max_wait_ms: int = 5
    # The suppression list's digests are keyed by REKISTERI_SUPPRESSION_KEY (shared settings,
    # SPEC §9). How stale the list of key chains in use may be: `rekisteri suppression rekey`
    # waits longer than this before it moves a digest onto a new chain.
    suppression_chain_ttl_s: float = 1.0
    # Largest campaign list one batch check takes (issue 4).
    consent_batch_max: int = 100_000
    # Batch checks per user (token bucket over entries; in-process, per replica): a burst of
    # this many entries, refilled at the rate per minute (issue 16: no enumeration of bans).
    consent_batch_burst_entries: int = 200_000
    consent_batch_entries_per_minute: float = 200_000


def consent_settings(runtime: ServiceRuntime) -> ConsentSettings:
    """The runtime's settings, typed as consent's: its app builds the runtime with them."""
    return cast(ConsentSettings, runtime.settings)
