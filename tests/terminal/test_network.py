"""The network view read from the kernel's routing tables (no host is contacted)."""
from __future__ import annotations

import socket

from terminal.network import default_interface, ipv4_address, network_status

ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def test_default_route_names_the_interface(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTE_HEADER
                     + "eth0\t0010A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                     + "wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n")
    assert default_interface(table) == "wlan0"
    table.write_text(ROUTE_HEADER + "eth0\t0010A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert default_interface(table) is None, "no default route: offline"
    table.write_text(ROUTE_HEADER + "eth0\t00000000\t0100A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert default_interface(table) is None, "a default route that is not up does not count"


def test_loopback_address_and_this_machines_status():
    assert ipv4_address("lo") == "127.0.0.1"
    assert ipv4_address("no-such-if0") is None
    status = network_status()
    assert set(status) == {"online", "interface", "address"}
    if status["address"]:
        socket.inet_aton(status["address"])        # a real dotted quad
        assert status["online"] and status["interface"]
