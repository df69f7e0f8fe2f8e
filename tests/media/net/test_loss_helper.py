"""tests/loss.py against real UDP sockets in a network namespace: the drop rate it sets is
the drop rate datagrams see, per port and direction, and clearing restores delivery."""
from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from tests.janus import create_netns, delete_netns, netns_entered
from tests.loss import clear_udp_loss, dropped_packets, loss_ruleset, set_udp_loss

DATAGRAMS = 3000


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("loss: needs root and nftables (CI runs as root with deps/apt.txt)")
    name = f"roombox-loss-{os.getpid()}"
    create_netns(name)
    try:
        yield name
    finally:
        delete_netns(name)


def _delivered(netns: str, count: int = DATAGRAMS) -> tuple[int, int]:
    """Send ``count`` datagrams a → b and b → a over loopback; how many arrived each way."""
    a, b = _port_pair(netns)
    with a, b:
        return _count(a, b, count), _count(b, a, count)


def _port_pair(netns: str) -> tuple[socket.socket, socket.socket]:
    with netns_entered(netns):
        pair = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in pair:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.settimeout(0.2)
    return pair


def _count(src: socket.socket, dst: socket.socket, count: int = DATAGRAMS) -> int:
    for i in range(count):
        src.sendto(i.to_bytes(4, "big"), dst.getsockname())
    return _drain(dst)


def _drain(sock: socket.socket) -> int:
    """Datagrams waiting at ``sock`` (until none comes for its 0.2 s timeout)."""
    got = 0
    try:
        while True:
            sock.recv(2000)
            got += 1
    except TimeoutError:
        return got


def test_ten_percent_loss_drops_about_ten_percent_each_way_and_clears(netns):
    set_udp_loss(netns, 10)
    ab, ba = _delivered(netns)
    # Binomial(3000, 0.1): sd ≈ 16 packets; ±90 is over 5 sd.
    for got in (ab, ba):
        assert abs((DATAGRAMS - got) - 300) < 90, f"delivered {got}/{DATAGRAMS} at 10 % loss"
    assert abs(dropped_packets(netns) - (2 * DATAGRAMS - ab - ba)) <= 2
    clear_udp_loss(netns)
    clear_udp_loss(netns)   # twice is fine
    assert _delivered(netns, 500) == (500, 500)


def test_port_loss_hits_only_that_peer_and_direction(netns):
    a, b = _port_pair(netns)
    c, d = _port_pair(netns)
    with a, b, c, d:
        port = a.getsockname()[1]
        set_udp_loss(netns, 50, direction="in", port=port)
        to_a, from_a, other = _count(b, a), _count(a, b), _count(c, d)
        clear_udp_loss(netns)
    assert abs(to_a - DATAGRAMS / 2) < 200, f"to the lossy port: {to_a}/{DATAGRAMS}"
    assert from_a == DATAGRAMS and other == DATAGRAMS


def test_bad_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="150"):
        loss_ruleset(150)
    with pytest.raises(ValueError, match="sideways"):
        loss_ruleset(5, direction="sideways")
    with pytest.raises(ValueError, match="70000"):
        loss_ruleset(5, port=70000)
    with pytest.raises(ValueError, match="at least one port"):
        loss_ruleset(5, port=())
    with pytest.raises(ValueError, match="capacity_kbps=-1"):
        loss_ruleset(0, port=5000, capacity_kbps=-1)
    with pytest.raises(ValueError, match="needs a port"):
        loss_ruleset(0, capacity_kbps=500)


def test_capacity_passes_the_rate_and_drops_the_excess_of_that_sender_only(netns):
    """A 400 kbit/s bottleneck on a's uplink: 1000-byte datagrams sent as fast as possible
    (a burst far over the rate) mostly drop; paced under the rate, all arrive; b → a is free."""
    a, b = _port_pair(netns)
    with a, b:
        set_udp_loss(netns, 0, port=a.getsockname()[1], capacity_kbps=400)
        payload = bytes(1000)
        for _ in range(500):                      # 4 Mbit in well under a second
            a.sendto(payload, b.getsockname())
        burst = _drain(b)
        for _ in range(20):                       # 20 kB over 0.5 s = 320 kbit/s
            a.sendto(payload, b.getsockname())
            time.sleep(0.025)
        paced = _drain(b)
        back = _count(b, a, 500)
        clear_udp_loss(netns)
    assert burst < 100, f"{burst}/500 datagrams of a burst passed a 400 kbit/s limit"
    assert paced >= 19, f"{paced}/20 datagrams paced under the limit arrived"
    assert back == 500 and dropped_packets(netns) == 0   # cleared: counters gone


def test_loss_on_two_ports_hits_both_legs_once_each(netns):
    """Both legs of a call at once: a → b and c → d each lose ~50 %, e → f is untouched,
    and no packet is judged twice (a → b would lose 75 % if it were)."""
    a, b = _port_pair(netns)
    c, d = _port_pair(netns)
    e, f = _port_pair(netns)
    with a, b, c, d, e, f:
        set_udp_loss(netns, 50, port=(a.getsockname()[1], d.getsockname()[1]))
        ab, cd, ef = _count(a, b), _count(c, d), _count(e, f)
        clear_udp_loss(netns)
    assert abs(ab - DATAGRAMS / 2) < 200 and abs(cd - DATAGRAMS / 2) < 200, (ab, cd)
    assert ef == DATAGRAMS
