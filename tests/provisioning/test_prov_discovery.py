"""Finding the service: seed file first, then DNS-SD, then a typed URL; clear errors."""
from __future__ import annotations

import socket
import threading

import pytest

from provisioning.agent.discovery import (SEED_NAME, ServiceLocation, browse_dns_sd, discover,
                                          read_seed, typed_location)
from provisioning.errors import DiscoveryError

PIN = "ab" * 32


def seed(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SEED_NAME).write_text(text)
    return folder


def test_seed_file_wins_over_dns_sd_and_typed_url(tmp_path):
    folder = seed(tmp_path / "boot", f'[service]\nurl = "https://prov.example.org:8443/"\n'
                                     f'ca_sha256 = "{PIN.upper()}"\n')
    found = discover([tmp_path / "usb", folder],
                     dns_sd=lambda: ServiceLocation("https://other", PIN, "dns-sd"),
                     typed=typed_location("https://typed.example.org", PIN))
    assert found == ServiceLocation("https://prov.example.org:8443", PIN,
                                    str(folder / SEED_NAME))


def test_dns_sd_then_typed_url_are_used_in_order(tmp_path):
    typed = typed_location("https://typed.example.org", "sha256:" + ":".join(["ab"] * 32))
    assert typed.ca_sha256 == PIN
    assert discover([tmp_path], dns_sd=lambda: None, typed=typed) == typed
    via_dns = ServiceLocation("https://dns.example.org", PIN, "dns-sd")
    assert discover([tmp_path], dns_sd=lambda: via_dns, typed=typed) == via_dns


def test_nothing_found_says_where_it_looked(tmp_path):
    with pytest.raises(DiscoveryError, match="no provisioning.toml seed"):
        discover([tmp_path])


@pytest.mark.parametrize("text, match", [
    ('[service]\nurl = "http://prov.example.org"\nca_sha256 = "' + PIN + '"\n',
     "service.url must be an https:// URL, got 'http://prov.example.org'"),
    ('[service]\nurl = "https://prov.example.org"\nca_sha256 = "abc"\n',
     "service.ca_sha256 must be the CA fingerprint, 64 hex digits"),
    ('[service]\nurl = "https://p"\nca_sha256 = "' + PIN + '"\nproxy = "x"\n',
     "unknown key 'proxy'"),
    ("[service\n", "not valid TOML"),
])
def test_bad_seed_is_rejected_naming_the_problem(tmp_path, text, match):
    folder = seed(tmp_path, text)
    with pytest.raises(DiscoveryError, match=match):
        read_seed(folder / SEED_NAME)


class DnsServer:
    """A real DNS server on a loopback UDP port answering from a small zone (dnspython)."""

    def __init__(self, records: list[tuple[str, str, str]]):
        import dns.rrset
        self.rrsets = [dns.rrset.from_text(name, 60, "IN", rtype, value)
                       for name, rtype, value in records]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        import dns.flags
        import dns.message
        import dns.rcode
        while self.running:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            q = query.question[0]
            answers = [r for r in self.rrsets if r.name == q.name and r.rdtype == q.rdtype]
            reply.answer.extend(answers)
            if not answers and not any(r.name == q.name for r in self.rrsets):
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def resolver(self, search: str):
        import dns.name
        import dns.resolver
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.search = [dns.name.from_text(search)]
        return resolver

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join(5)
        self.sock.close()


def test_dns_sd_finds_the_service_and_its_pin():
    records = [("_roombox-prov._tcp.corp.example.", "PTR", "prov._roombox-prov._tcp.corp.example."),
               ("prov._roombox-prov._tcp.corp.example.", "SRV", "0 0 8443 prov.corp.example."),
               ("prov._roombox-prov._tcp.corp.example.", "TXT", f'"ca_sha256={PIN}"')]
    with DnsServer(records) as server:
        found = browse_dns_sd(server.resolver("corp.example."))
        assert found.url == "https://prov.corp.example:8443"
        assert found.ca_sha256 == PIN and found.source.startswith("DNS-SD prov.")
        # Nothing published in another domain: not found, no error.
        assert browse_dns_sd(server.resolver("other.example.")) is None


def test_dns_sd_record_without_a_pin_is_refused():
    records = [("_roombox-prov._tcp.corp.example.", "PTR", "prov._roombox-prov._tcp.corp.example."),
               ("prov._roombox-prov._tcp.corp.example.", "SRV", "0 0 8443 prov.corp.example."),
               ("prov._roombox-prov._tcp.corp.example.", "TXT", '"path=/"')]
    with DnsServer(records) as server, pytest.raises(DiscoveryError, match="ca_sha256"):
        browse_dns_sd(server.resolver("corp.example."))
