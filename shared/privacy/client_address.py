"""The minimised form of a client's network address kept as proof of a self-service consent
(SPEC §9, §10; issue 14). A full address identifies a connection, often a person; proof needs
only to show roughly where the change came from. So the register keeps the network, never the
host: IPv4 truncated to /24, IPv6 to /48 (the widths the usual anonymisation of web analytics
uses). What is not an address (a test client's name, "unknown") is kept as nothing."""
from __future__ import annotations

import ipaddress

IPV4_PREFIX = 24
IPV6_PREFIX = 48


def client_network(address: str | None) -> str | None:
    """'203.0.113.77' -> '203.0.113.0/24'; '2001:db8:1:2::5' -> '2001:db8:1::/48'; else None."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
