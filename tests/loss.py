"""Random UDP packet loss inside a network namespace, with nftables (this kernel has no netem).

    set_udp_loss("roombox-janus-1-0", 10)                 # 10 % of every UDP packet, once
    set_udp_loss(netns, 20, port=51234)                   # one leg: the peer bound to 51234
    set_udp_loss(netns, 5, direction="in", port=51234)    # only packets *to* that port
    clear_udp_loss(netns)

    with udp_loss(netns, 10, port=leg_port(pc)): ...      # cleared on exit
    set_udp_loss(netns, 0, port=51234, capacity_kbps=500) # a 500 kbit/s uplink for that peer

The rules live in one table (``inet roombox_loss``) that each call replaces atomically, so
one loss setting holds per namespace at a time. A packet is dropped when
``numgen random mod 10000 < percent*100`` (0.01 % resolution), independently per packet.

Where a packet is judged: once, on the input hook if it loops back inside the namespace
(dropping on output would make the sender's ``sendto()`` fail with EPERM, which no real
network does), else on the output hook when it leaves and on the input hook when it
arrives. ``direction`` is relative to ``port``: "out" = packets sent *from* ``port``,
"in" = packets sent *to* it, "both" = either. Without a port it picks the hook for packets
crossing another device ("in" arriving, "out" leaving); a looped-back packet is both, so on
a loopback-only namespace every direction drops ``percent`` % of every UDP packet once.
TCP (e.g. Janus's HTTP API) is never touched.

``capacity_kbps`` adds a bottleneck on what ``port`` sends: a token-bucket policer (100 ms
of burst) drops what exceeds the rate, as a congested uplink's full queue would — loss that
falls when the sender sends less, unlike the random loss (no queueing delay is modelled).
"""
from __future__ import annotations

import contextlib
import subprocess
from typing import Iterator

TABLE = "roombox_loss"
NFT_TIMEOUT_S = 10
DIRECTIONS = ("both", "in", "out")


def _nft(netns: str, script: str) -> None:
    result = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script,
                            capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"nft in netns {netns} failed ({result.returncode}): "
                           f"{result.stderr.strip()}\nscript:\n{script}")


def _match(direction: str, port: int | tuple[int, ...] | None) -> list[str]:
    """nftables match expressions (one rule each) for the packets this setting applies to.
    Several ports (both legs of a call) become an anonymous set: a packet between two peers
    of a call has only one of them, so it is judged once."""
    if port is None:
        return ["meta l4proto udp"]
    ports = f"{{ {', '.join(map(str, port))} }}" if isinstance(port, tuple) else str(port)
    return {"out": [f"udp sport {ports}"], "in": [f"udp dport {ports}"],
            "both": [f"udp sport {ports}", f"udp dport {ports}"]}[direction]


def loss_ruleset(percent: float, direction: str = "both",
                 port: int | tuple[int, ...] | None = None,
                 capacity_kbps: float | None = None) -> str:
    """The nft script that replaces the loss table (exposed for tests and error messages)."""
    if capacity_kbps is not None and (port is None or not capacity_kbps > 0):
        raise ValueError(f"loss capacity_kbps must be > 0 and needs a port (whose uplink it "
                         f"limits), got capacity_kbps={capacity_kbps!r}, port={port!r}")
    if not 0 <= percent <= 100:
        raise ValueError(f"loss percent must be within 0..100, got {percent!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"loss direction must be one of {DIRECTIONS}, got {direction!r}")
    ports = port if isinstance(port, tuple) else () if port is None else (port,)
    if isinstance(port, tuple) and not port:
        raise ValueError("loss ports: expected at least one port, got ()")
    if not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
        raise ValueError(f"loss port must be within 1..65535, got {port!r}")
    threshold = round(percent * 100)
    drop = f"numgen random mod 10000 < {threshold} counter drop"
    matches = _match(direction, port)
    # Dropping on the output hook makes the sender's sendto() fail with EPERM, which a
    # real network never does: packets looping back inside the namespace are judged on the
    # input hook only; the output hook judges only what leaves through another device.
    out_rules = [] if port is None and direction == "in" else \
        [f'oif != "lo" {m} {drop}' for m in matches]
    if port is None and direction == "out":
        in_rules = [f'iif "lo" {m} {drop}' for m in matches]
    else:
        in_rules = [f"{m} {drop}" for m in matches]
    if capacity_kbps is not None:
        bytes_per_s = max(1, round(capacity_kbps * 1000 / 8))
        police = (f"{_match('out', port)[0]} limit rate over {bytes_per_s} bytes/second "
                  f"burst {max(1500, bytes_per_s // 10)} bytes counter drop")
        out_rules.append(f'oif != "lo" {police}')
        in_rules.append(police)
    body = "\n".join([
        f"table inet {TABLE} {{",
        "  chain out { type filter hook output priority 0; policy accept;",
        *(f"    {rule}" for rule in out_rules), "  }",
        "  chain in { type filter hook input priority 0; policy accept;",
        *(f"    {rule}" for rule in in_rules), "  }",
        "}"])
    # "table …; delete table …" makes the delete safe when the table does not exist yet,
    # and the whole script is one transaction: no moment without rules.
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n{body}\n"


def set_udp_loss(netns: str, percent: float, direction: str = "both",
                 port: int | tuple[int, ...] | None = None,
                 capacity_kbps: float | None = None) -> None:
    """Drop ``percent`` % of UDP packets in ``netns`` (replacing any earlier setting).
    ``port`` limits it to one peer's socket (one leg of a call), a tuple to several (both
    legs); ``direction`` is relative to those ports; ``capacity_kbps`` also limits what
    those ports send to that rate. Needs root."""
    _nft(netns, loss_ruleset(percent, direction, port, capacity_kbps))


def clear_udp_loss(netns: str) -> None:
    """Remove the loss rules from ``netns`` (no error if there were none)."""
    _nft(netns, f"table inet {TABLE}\ndelete table inet {TABLE}\n")


def dropped_packets(netns: str) -> int:
    """Packets the loss rules in ``netns`` have dropped so far (0 without rules)."""
    result = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet", TABLE],
                            capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    total = 0
    for line in result.stdout.splitlines():
        words = line.split()
        if "counter" in words and "packets" in words:
            total += int(words[words.index("packets") + 1])
    return total


@contextlib.contextmanager
def udp_loss(netns: str, percent: float, direction: str = "both",
             port: int | tuple[int, ...] | None = None) -> Iterator[None]:
    """``set_udp_loss`` for the duration of a block."""
    set_udp_loss(netns, percent, direction, port)
    try:
        yield
    finally:
        clear_udp_loss(netns)


def leg_port(pc) -> int:
    """The local UDP port of an aiortc RTCPeerConnection's (bundled) ICE transport, once
    gathered: the handle for loss on that peer's leg. ``pc`` is any object with aiortc's
    ``getTransceivers()``/``sctp``; raises if it has not gathered yet."""
    transports = [t.sender.transport for t in pc.getTransceivers() if t.sender.transport]
    if not transports:
        raise RuntimeError("leg_port: the peer connection has no transport yet (negotiate first)")
    connection = transports[0].transport.iceGatherer._connection
    for protocol in connection._protocols:
        sockname = protocol.transport.get_extra_info("sockname")
        if sockname:
            return sockname[1]
    raise RuntimeError("leg_port: the ICE connection has no bound UDP socket")
