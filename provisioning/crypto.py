"""Keys, certificates and signed documents shared by the agent and the service.

Device and TLS keys are ECDSA P-256 (every TLS stack accepts them for client and server
certificates); documents are signed with Ed25519 as JWS (``alg: Ed25519``, RFC 9864).
Private keys are written 0600 through ``write_atomic``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

JWS_ALG = "Ed25519"
DEVICE_CERT_DAYS = 825
SERVER_CERT_DAYS = 825
CA_DAYS = 3650
# Certificates start a year in the past: a Raspberry Pi has no real-time clock and boots
# with the date its image was built (fake-hwclock) until NTP answers, and TLS must work then.
BACKDATE = dt.timedelta(days=365)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half.

    Temp file in the same directory, fsync, rename, then fsync the directory so the rename
    survives a power cut (boxes lose power without warning).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key or token hash readable by its owner only (0600)."""
    write_atomic(path, data, mode=0o600)


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes):
    return serialization.load_pem_private_key(pem, password=None)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert_pem_data: bytes | str) -> str:
    """SHA-256 of the certificate's DER form, lowercase hex (the pin format)."""
    if isinstance(cert_pem_data, str):
        cert_pem_data = cert_pem_data.encode()
    cert = x509.load_pem_x509_certificate(cert_pem_data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalise_fingerprint(value: str) -> str:
    """Accept ``AB:CD:...`` or ``abcd...`` (optionally ``sha256:``-prefixed)."""
    value = value.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"CA fingerprint must be 64 hex digits (SHA-256), got {value!r}")
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that issues the TLS server and device certificates."""
    key = new_tls_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - BACKDATE)
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert: x509.Certificate, subject: x509.Name, public_key, days: int,
          usage: ExtendedKeyUsageOID,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(_now() - BACKDATE)
               .not_valid_after(_now() + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def issue_server_cert(ca_key, ca_cert: x509.Certificate, names: list[str]):
    """TLS server key and certificate for ``names`` (DNS names or IP addresses)."""
    if not names:
        raise ValueError("server certificate needs at least one name, got none")
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = new_tls_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return key, _leaf(ca_key, ca_cert, subject, key.public_key(), SERVER_CERT_DAYS,
                      ExtendedKeyUsageOID.SERVER_AUTH, sans)


def make_csr(key, serial: str) -> bytes:
    """A CSR whose subject common name and serialNumber are the box's serial number."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_serial(csr_pem: bytes | str) -> str:
    """The serial a CSR claims, after checking its self-signature (proof of key possession)."""
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode()
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise ValueError(f"csr: not a PEM certificate request ({exc})") from None
    if not csr.is_signature_valid:
        raise ValueError("csr: signature does not match its public key")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise ValueError("csr: key must be ECDSA P-256")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ValueError("csr: subject has no common name (expected the serial number)")
    return str(names[0].value)


def sign_device_csr(ca_key, ca_cert: x509.Certificate, csr_pem: bytes | str) -> bytes:
    """Issue the device (TLS client) certificate for a CSR; returns PEM."""
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode()
    serial = csr_serial(csr_pem)
    csr = x509.load_pem_x509_csr(csr_pem)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    cert = _leaf(ca_key, ca_cert, subject, csr.public_key(), DEVICE_CERT_DAYS,
                 ExtendedKeyUsageOID.CLIENT_AUTH)
    return cert_pem(cert)


def cert_common_name(cert_der: bytes) -> str:
    cert = x509.load_der_x509_certificate(cert_der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# --- Ed25519 signed documents (JWS compact) -------------------------------------------------

def new_signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_document(payload: dict, private_key_pem: bytes, typ: str) -> str:
    """Sign ``payload`` (a JSON object) as a compact JWS with the service's Ed25519 key."""
    key = OKPKey.import_key(private_key_pem)
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return jws.serialize_compact({"alg": JWS_ALG, "typ": typ}, body, key, algorithms=[JWS_ALG])


def verify_document(token: str, public_key_pem: bytes, typ: str) -> dict:
    """Verify a compact JWS and return its JSON payload.

    Raises ``ValueError`` naming what was wrong (format, signature, type, payload).
    """
    key = OKPKey.import_key(public_key_pem)
    try:
        obj = jws.deserialize_compact(token, key, algorithms=[JWS_ALG])
    except JoseError as exc:
        raise ValueError(f"signature check failed ({exc.error}: {exc.description or 'bad JWS'})") \
            from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a compact JWS ({exc})") from None
    if obj.headers().get("typ") != typ:
        raise ValueError(f"JWS typ must be {typ!r}, got {obj.headers().get('typ')!r}")
    try:
        payload = json.loads(obj.payload)
    except ValueError:
        raise ValueError("JWS payload is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError(f"JWS payload must be a JSON object, got {type(payload).__name__}")
    return payload
