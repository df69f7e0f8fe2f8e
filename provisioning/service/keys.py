"""The service's data directory: CA, config-signing key, TLS certificate, admin token.

``init_service`` makes them once; ``ServiceKeys.load`` reads them at start. Private keys
and the admin token hash are 0600; the token itself is shown once and never stored.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .. import crypto

CA_KEY, CA_CERT = "ca.key", "ca.pem"
SIGNING_KEY, SIGNING_PUB = "config-signing.key", "config-signing.pub.pem"
TLS_KEY, TLS_CERT = "tls.key", "tls.pem"
TOKEN_HASH = "admin-token.sha256"
SETTINGS = "service.json"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


class ServiceInitError(RuntimeError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def init_service(data: Path, names: list[str] | None = None, database_url: str | None = None,
                 force: bool = False) -> str:
    """Create the CA, signing key, TLS certificate and admin token in ``data``.

    Returns the admin token (the only time it exists in clear). Refuses to overwrite an
    existing CA unless ``force``: a new CA orphans every enrolled box.
    """
    data = Path(data)
    if (data / CA_KEY).exists() and not force:
        raise ServiceInitError(f"server init: {data} already holds a CA; "
                               "refusing to replace it (every enrolled box trusts it)")
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    names = list(names or DEFAULT_NAMES)
    ca_key, ca_cert = crypto.create_ca("roombox provisioning CA")
    tls_key, tls_cert = crypto.issue_server_cert(ca_key, ca_cert, names)
    signing = crypto.new_signing_key()
    token = secrets.token_urlsafe(32)
    crypto.write_secret(data / CA_KEY, crypto.key_pem(ca_key))
    crypto.write_atomic(data / CA_CERT, crypto.cert_pem(ca_cert))
    crypto.write_secret(data / TLS_KEY, crypto.key_pem(tls_key))
    crypto.write_atomic(data / TLS_CERT, crypto.cert_pem(tls_cert) + crypto.cert_pem(ca_cert))
    crypto.write_secret(data / SIGNING_KEY, crypto.key_pem(signing))
    crypto.write_atomic(data / SIGNING_PUB, crypto.public_pem(signing))
    crypto.write_secret(data / TOKEN_HASH, hash_token(token).encode())
    settings = {"names": names,
                "database_url": database_url or f"sqlite:///{(data / 'roombox.db').resolve()}"}
    crypto.write_atomic(data / SETTINGS, json.dumps(settings, indent=2).encode())
    return token


@dataclass(frozen=True)
class ServiceKeys:
    """Everything the running service reads from its data directory."""
    data: Path
    ca_key: object
    ca_cert: x509.Certificate
    ca_pem: bytes
    signing_key_pem: bytes
    signing_pub_pem: bytes
    token_hash: str
    names: tuple[str, ...]
    database_url: str

    @classmethod
    def load(cls, data: Path) -> "ServiceKeys":
        data = Path(data)
        if not (data / CA_KEY).exists():
            raise ServiceInitError(f"server: {data} has no CA; run `roombox server init "
                                   f"--data {data}` first")
        settings = json.loads((data / SETTINGS).read_text())
        ca_pem = (data / CA_CERT).read_bytes()
        return cls(data=data, ca_key=crypto.load_key((data / CA_KEY).read_bytes()),
                   ca_cert=x509.load_pem_x509_certificate(ca_pem), ca_pem=ca_pem,
                   signing_key_pem=(data / SIGNING_KEY).read_bytes(),
                   signing_pub_pem=(data / SIGNING_PUB).read_bytes(),
                   token_hash=(data / TOKEN_HASH).read_text().strip(),
                   names=tuple(settings["names"]), database_url=settings["database_url"])

    def token_ok(self, token: str) -> bool:
        return hmac.compare_digest(hash_token(token), self.token_hash)

    @property
    def tls_cert_path(self) -> Path:
        return self.data / TLS_CERT

    @property
    def tls_key_path(self) -> Path:
        return self.data / TLS_KEY

    @property
    def ca_cert_path(self) -> Path:
        return self.data / CA_CERT
