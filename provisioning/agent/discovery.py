"""Where the provisioning service is: seed file, then DNS-SD, then a URL an admin typed.

DNS-SD is unicast (RFC 6763 over the site's DNS, in the resolver's search domain): IT
publishes ``PTR _roombox-prov._tcp.<domain>`` naming an instance with an SRV record
(host, port) and a TXT record ``ca_sha256=<pin>``.

A seed (``provisioning.toml`` on the boot partition or a USB stick) looks like::

    [service]
    url = "https://prov.example.org:8443"
    ca_sha256 = "3f1c...64 hex digits"

Nothing found this way is trusted beyond *where to connect*: the CA served there must
match the pinned fingerprint, and every later connection verifies against that CA.
"""
from __future__ import annotations

import logging
import ssl
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import httpx

from .. import crypto, protocol
from ..errors import DiscoveryError

log = logging.getLogger(__name__)
SEED_NAME = "provisioning.toml"
DEFAULT_SEED_DIRS = (Path("/boot/firmware"), Path("/boot"), Path("/media/usb"))
CA_FETCH_TIMEOUT_S = 10
DNS_SD_TIMEOUT_S = 5
SERVICE_TYPE = "_roombox-prov._tcp"


@dataclass(frozen=True)
class ServiceLocation:
    url: str
    ca_sha256: str
    source: str


def _location(url, pin, source: str) -> ServiceLocation:
    if not isinstance(url, str) or urlsplit(url).scheme != "https" or not urlsplit(url).netloc:
        raise DiscoveryError(f"{source}: service.url must be an https:// URL, got {url!r}")
    if not isinstance(pin, str):
        raise DiscoveryError(f"{source}: service.ca_sha256 must be 64 hex digits, got {pin!r}")
    try:
        pin = crypto.normalise_fingerprint(pin)
    except ValueError:
        raise DiscoveryError(f"{source}: service.ca_sha256 must be the CA fingerprint, 64 hex "
                             f"digits (SHA-256), got {pin!r}") from None
    return ServiceLocation(url.rstrip("/"), pin, source)


def read_seed(path: Path) -> ServiceLocation:
    """Parse a seed file; raises ``DiscoveryError`` naming the file and the bad key."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DiscoveryError(f"{path}: not valid TOML ({exc})") from None
    service = data.get("service")
    unknown = set(data) - {"service"} | (set(service) - {"url", "ca_sha256"}
                                         if isinstance(service, dict) else set())
    if unknown:
        raise DiscoveryError(f"{path}: unknown key {sorted(unknown)[0]!r}; "
                             "expected [service] with url and ca_sha256")
    if not isinstance(service, dict):
        raise DiscoveryError(f"{path}: needs a [service] table with url and ca_sha256")
    return _location(service.get("url"), service.get("ca_sha256"), str(path))


def typed_location(url: str, ca_sha256: str) -> ServiceLocation:
    """A location an admin typed through the control socket (URL and fingerprint)."""
    return _location(url, ca_sha256, "typed by admin")


def discover(seed_dirs: Iterable[Path] = DEFAULT_SEED_DIRS,
             dns_sd: Callable[[], ServiceLocation | None] | None = None,
             typed: ServiceLocation | None = None) -> ServiceLocation:
    """The first location found: seed file, then DNS-SD (if given), then the typed one."""
    for folder in seed_dirs:
        seed = Path(folder) / SEED_NAME
        if seed.is_file():
            return read_seed(seed)
    if dns_sd is not None:
        found = dns_sd()
        if found is not None:
            return found
    if typed is not None:
        return typed
    raise DiscoveryError("no provisioning service: no provisioning.toml seed, nothing on "
                         "DNS-SD, and no URL typed by an admin")


def browse_dns_sd(resolver: dns.resolver.Resolver | None = None,
                  domain: str | None = None) -> ServiceLocation | None:
    """Look up ``_roombox-prov._tcp`` in ``domain`` (default: the resolver's search domains).

    Blocking (DNS queries): call it from a thread. Returns None when nothing is published;
    a published record without a valid pin raises ``DiscoveryError``.
    """
    resolver = resolver or dns.resolver.Resolver()
    resolver.lifetime = DNS_SD_TIMEOUT_S
    domains = [dns.name.from_text(domain)] if domain else list(resolver.search) or (
        [resolver.domain] if resolver.domain != dns.name.root else [])
    for zone in domains:
        browse = dns.name.from_text(SERVICE_TYPE, origin=zone)
        try:
            instances = sorted(r.target for r in resolver.resolve(browse, "PTR", search=False))
            if not instances:
                continue
            srv = min(resolver.resolve(instances[0], "SRV", search=False),
                      key=lambda r: (r.priority, -r.weight))
            txt = resolver.resolve(instances[0], "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        except dns.exception.Timeout:
            log.warning("discovery: DNS-SD lookup of %s timed out", browse)
            continue
        fields = dict(part.decode().partition("=")[::2] for r in txt for part in r.strings)
        host = srv.target.to_text(omit_final_dot=True)
        return _location(f"https://{host}:{srv.port}", fields.get("ca_sha256"),
                         f"DNS-SD {instances[0].to_text()}")
    return None


async def fetch_pinned_ca(location: ServiceLocation) -> bytes:
    """Download the service's CA certificate and check it against the pinned fingerprint.

    The download itself is unverified on purpose (we do not have the anchor yet); the pin
    check is what makes the result trustworthy.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with httpx.AsyncClient(verify=ctx, timeout=CA_FETCH_TIMEOUT_S) as client:
            resp = await client.get(location.url + protocol.CA_PATH)
            resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"discovery: cannot fetch CA from {location.url} ({exc})") from None
    pem = resp.content
    try:
        got = crypto.fingerprint(pem)
    except ValueError:
        raise DiscoveryError(f"discovery: {location.url} served no PEM certificate") from None
    if got != location.ca_sha256:
        raise DiscoveryError(f"discovery: CA at {location.url} has fingerprint {got}, "
                             f"pinned {location.ca_sha256} ({location.source})")
    return pem
