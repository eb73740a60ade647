"""Ports for the embedded stack's components come from below the kernel's ephemeral range: a
port from that range could be taken by an outgoing connection before the component bound it,
and the component exited at start-up (seen in the fault tests on a busy machine, issue 20)."""
from __future__ import annotations

import socket

from shared.ops.stack import ephemeral_ports, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_bindable():
    low, _ = ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert all(port < low for port in ports), [p for p in ports if p >= low]
    assert len(set(ports)) == len(ports)  # never handed out twice
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))


def test_a_port_in_use_is_passed_over_and_none_is_handed_out_twice(monkeypatch):
    """Three candidates below a narrowed range, one of them listening: the other two come out,
    then the kernel's choice (no candidate left)."""
    from shared.ops import stack
    base = 20_000 + free_port() % 10_000
    while not all(_bindable(base + i) for i in range(3)):
        base += 3
    monkeypatch.setattr(stack, "LOWEST_PORT", base)
    monkeypatch.setattr(stack, "ephemeral_ports", lambda: (base + 3, 60_999))
    monkeypatch.setattr(stack, "_handed_out", set())
    monkeypatch.setattr(stack.random, "sample", lambda ports, k: list(ports)[:k])  # in order: the listening one first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        assert [free_port(), free_port()] == [base + 1, base + 2]
        assert free_port() not in range(base, base + 3)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
