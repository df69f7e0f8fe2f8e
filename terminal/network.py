"""The box's own view of its network, for the room screen and status: is there a default
route, through which interface, with which address. Reads the kernel's tables only; it
contacts nobody (sovereign by default: no "connectivity check" host)."""
from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path
from typing import Any

ROUTES = Path("/proc/net/route")
ROUTES_V6 = Path("/proc/net/ipv6_route")
SIOCGIFADDR = 0x8915
RTF_UP = 0x1


def default_interface(routes: Path = ROUTES) -> str | None:
    """The interface of the IPv4 default route (destination 0.0.0.0, route up), if any."""
    try:
        lines = routes.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "00000000" and int(fields[3], 16) & RTF_UP:
            return fields[0]
    return None


def default_interface_v6(routes: Path = ROUTES_V6) -> str | None:
    try:
        lines = routes.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # destination ::/0 and not the loopback device's catch-all
        if len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
            return fields[9]
    return None


def ipv4_address(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def network_status() -> dict[str, Any]:
    """``online`` (a default route exists), ``interface`` and ``address`` (IPv4 if any)."""
    interface = default_interface()
    address = ipv4_address(interface) if interface else None
    if interface is None:
        interface = default_interface_v6()
    return {"online": interface is not None, "interface": interface, "address": address}
