"""The client address kept as proof of a self-service consent is its network only (SPEC §9
minimise, §10 proof; issue 14; docs/PRIVACY.md)."""
from __future__ import annotations

import pytest

from shared.privacy import client_network


@pytest.mark.parametrize("address, network", [
    ("203.0.113.77", "203.0.113.0/24"),
    (" 198.51.100.1 ", "198.51.100.0/24"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
    ("::ffff:203.0.113.9", "203.0.113.0/24"),  # an IPv4 client on a dual-stack socket
])
def test_the_host_part_is_dropped(address, network):
    assert client_network(address) == network


@pytest.mark.parametrize("address", [None, "", "unknown", "testclient", "999.1.1.1"])
def test_what_is_not_an_address_is_kept_as_nothing(address):
    assert client_network(address) is None
