"""The box's identity: a key pair that never leaves it, the CSR, and what enrolment returns.

Layout of the state directory (0700)::

    device.key          ECDSA P-256 private key, 0600, made on first boot
    device.pem          device certificate from the service's CA (after enrolment)
    ca.pem              the service CA, after its fingerprint matched the pin
    config-key.pem      the service's Ed25519 public key for configs and commands
    service.json        the management link: service URL and CA fingerprint
"""
from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

from .. import crypto


class DeviceIdentity:
    """Key, certificate and trust anchors of one box, persisted in ``state_dir``."""

    def __init__(self, state_dir: Path, serial: str):
        if not serial or any(c.isspace() for c in serial):
            raise ValueError(f"serial must be a non-empty word, got {serial!r}")
        self.dir = Path(state_dir)
        self.serial = serial
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.key_path = self.dir / "device.key"
        self.cert_path = self.dir / "device.pem"
        self.ca_path = self.dir / "ca.pem"
        self.config_key_path = self.dir / "config-key.pem"
        self.service_path = self.dir / "service.json"
        if not self.key_path.exists():
            crypto.write_secret(self.key_path, crypto.key_pem(crypto.new_tls_key()))

    def csr(self) -> str:
        key = crypto.load_key(self.key_path.read_bytes())
        return crypto.make_csr(key, self.serial).decode()

    @property
    def is_enrolled(self) -> bool:
        return self.cert_path.exists() and self.config_key_path.exists()

    @property
    def config_key_pem(self) -> bytes:
        return self.config_key_path.read_bytes()

    def save_ca(self, ca_pem: bytes) -> None:
        crypto.write_atomic(self.ca_path, ca_pem)

    def save_enrolment(self, body: dict) -> None:
        """Keep the certificate and signing key the service returned on acceptance."""
        if crypto.fingerprint(body["ca"]) != crypto.fingerprint(self.ca_path.read_bytes()):
            raise ValueError("enrolment answer names a CA other than the pinned one")
        crypto.write_atomic(self.config_key_path, body["config_key"].encode())
        # Certificate last: its presence is what marks the box enrolled.
        crypto.write_atomic(self.cert_path, body["certificate"].encode())

    def forget_certificate(self) -> None:
        """After revocation: drop the certificate and make a fresh key for re-enrolment."""
        self.cert_path.unlink(missing_ok=True)
        crypto.write_secret(self.key_path, crypto.key_pem(crypto.new_tls_key()))

    def save_service(self, url: str, ca_sha256: str) -> None:
        crypto.write_atomic(self.service_path,
                            json.dumps({"url": url, "ca_sha256": ca_sha256}).encode())

    def saved_service(self) -> dict | None:
        try:
            return json.loads(self.service_path.read_text())
        except FileNotFoundError:
            return None

    def ssl_context(self) -> ssl.SSLContext:
        """Verify the service against the pinned CA only; present the device cert if we have one."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_path.exists():
            ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx
