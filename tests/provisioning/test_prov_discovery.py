"""Finding the service: seed file first, then DNS-SD, then a typed URL; clear errors."""
from __future__ import annotations

import pytest

from provisioning.agent.discovery import (SEED_NAME, ServiceLocation, discover, read_seed,
                                          typed_location)
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
     "CA fingerprint must be 64 hex digits"),
    ('[service]\nurl = "https://p"\nca_sha256 = "' + PIN + '"\nproxy = "x"\n',
     "unknown key 'proxy'"),
    ("[service\n", "not valid TOML"),
])
def test_bad_seed_is_rejected_naming_the_problem(tmp_path, text, match):
    folder = seed(tmp_path, text)
    with pytest.raises(DiscoveryError, match=match):
        read_seed(folder / SEED_NAME)
