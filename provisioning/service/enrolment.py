"""Enrolment: pre-registered boxes (path A), activation codes (B) and pending boxes (C).

Every function runs inside one database transaction (``conn``) and returns plain data;
HTTP lives in ``app.py``. Times are integer seconds (``now``) or milliseconds (``now_ms``).
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import Connection, func, insert, select, update

from .. import crypto, protocol
from ..schema import CONFIG_TYP, Settings, parse_settings
from .db import audit, code_failures, configs, device_codes, devices
from .keys import ServiceKeys

ROOM_FIELDS = ("site", "room", "meeting_url", "calendar_url", "hardware_profile")


@dataclass(frozen=True)
class Tunables:
    """Service timings; tests and the fleet benchmark shorten them."""
    poll_interval_s: float = protocol.POLL_INTERVAL_S
    code_ttl_s: int = protocol.CODE_TTL_S
    checkin_interval_s: float = protocol.CHECKIN_INTERVAL_S
    code_failure_limit: int = 10        # wrong codes per client ...
    code_failure_window_s: int = 600    # ... per ten minutes; then 429 until the window moves


class Refused(Exception):
    """A request the service turns down: HTTP status and a JSON body for the client."""

    def __init__(self, status: int, error: str, detail: str = "", **extra):
        super().__init__(detail or error)
        self.status, self.body = status, {"error": error, "detail": detail, **extra}


def record_audit(conn: Connection, now: int, actor: str, action: str, target: str,
                 **detail) -> None:
    conn.execute(insert(audit).values(at=now, actor=actor, action=action, target=target,
                                      detail=json.dumps(detail, sort_keys=True)))


def room_fields(data: dict) -> dict:
    """The registration fields of ``data``, checked with the same rules as signed settings."""
    fields = {k: data[k] for k in ROOM_FIELDS if data.get(k) not in (None, "")}
    parse_settings(fields)   # raises ConfigRejected naming the key
    return fields


def sign_config(conn: Connection, keys: ServiceKeys, serial: str, settings: Settings,
                now: int, ttl_s: int = protocol.CONFIG_TTL_S) -> int:
    """Store the next config version for ``serial`` as a signed JWS; returns the version."""
    current = conn.execute(select(func.max(configs.c.version))
                           .where(configs.c.serial == serial)).scalar() or 0
    version = current + 1
    document = crypto.sign_document({"sub": serial, "ver": version, "iat": now,
                                     "exp": now + ttl_s, "settings": settings.to_dict()},
                                    keys.signing_key_pem, CONFIG_TYP)
    conn.execute(insert(configs).values(serial=serial, version=version, document=document,
                                        created_at=now))
    return version


def _accept(conn: Connection, keys: ServiceKeys, row, fields: dict, now: int,
            actor: str, how: str) -> None:
    """Mark a box accepted with its room and sign its first config from the registration."""
    merged = {k: row._mapping[k] for k in ROOM_FIELDS} | fields
    conn.execute(update(devices).where(devices.c.serial == row.serial)
                 .values(state="accepted", **merged))
    sign_config(conn, keys, row.serial, parse_settings({k: v for k, v in merged.items() if v}),
                now)
    record_audit(conn, now, actor, f"device.accept.{how}", row.serial, **fields)


def _issue(conn: Connection, keys: ServiceKeys, serial: str, csr_pem: str, now: int) -> dict:
    cert = crypto.sign_device_csr(keys.ca_key, keys.ca_cert, csr_pem)
    conn.execute(update(devices).where(devices.c.serial == serial)
                 .values(cert_fingerprint=crypto.fingerprint(cert), enrolled_at=now))
    return {"status": "accepted", "certificate": cert.decode(), "ca": keys.ca_pem.decode(),
            "config_key": keys.signing_pub_pem.decode()}


def _same_key(csr_a: str, csr_b: str) -> bool:
    a = x509.load_pem_x509_csr(csr_a.encode()).public_key()
    b = x509.load_pem_x509_csr(csr_b.encode()).public_key()
    return a.public_numbers() == b.public_numbers()


def enrol(conn: Connection, keys: ServiceKeys, tun: Tunables, serial: str, csr_pem: str,
          hardware_profile: str, base_url: str, now: int) -> tuple[int, dict]:
    """Handle a box's enrolment request; returns (HTTP status, body)."""
    try:
        claimed = crypto.csr_serial(csr_pem)
    except ValueError as exc:
        raise Refused(400, "invalid_request", str(exc)) from None
    if claimed != serial:
        raise Refused(400, "invalid_request",
                      f"csr common name must equal serial {serial!r}, got {claimed!r}")
    row = conn.execute(select(devices).where(devices.c.serial == serial)).first()
    if row is not None and row.state == "rejected":
        raise Refused(403, protocol.DENIED, f"device {serial} was rejected by an admin")
    if row is not None and row.state == "accepted" and row.cert_fingerprint:
        raise Refused(409, "already_enrolled",
                      f"device {serial} already has a certificate; an admin must remove it "
                      "before it can enrol again")
    if row is not None and row.state == "preregistered":
        conn.execute(update(devices).where(devices.c.serial == serial).values(csr_pem=csr_pem))
        _accept(conn, keys, row, {}, now, "device", "preregistered")
        return 200, _issue(conn, keys, serial, csr_pem, now)
    if row is not None and row.state == "accepted":
        # Accepted while its code expired: only the key the admin saw may collect it.
        if not _same_key(row.csr_pem, csr_pem):
            raise Refused(409, "key_mismatch", f"device {serial} was accepted with another key")
        return 200, _issue(conn, keys, serial, csr_pem, now)
    if row is None:
        conn.execute(insert(devices).values(serial=serial, state="pending", created_at=now,
                                            csr_pem=csr_pem, hardware_profile=hardware_profile,
                                            site="", room="", meeting_url="", calendar_url=""))
        record_audit(conn, now, "device", "device.pending", serial)
    else:
        conn.execute(update(devices).where(devices.c.serial == serial).values(csr_pem=csr_pem))
    # A new request supersedes the box's older codes, so only the code on screen works.
    conn.execute(update(device_codes).where(device_codes.c.serial == serial,
                                            device_codes.c.status == "pending")
                 .values(status="superseded"))
    user_code = protocol.new_user_code()
    device_code = secrets.token_urlsafe(32)
    conn.execute(insert(device_codes).values(
        device_code=device_code, user_code=user_code, serial=serial, created_at=now,
        expires_at=now + tun.code_ttl_s, interval_ms=int(tun.poll_interval_s * 1000),
        status="pending"))
    uri = f"{base_url.rstrip('/')}{protocol.ACTIVATE_PATH}"
    return 202, {"status": "pending", "device_code": device_code, "user_code": user_code,
                 "verification_uri": uri, "verification_uri_complete": f"{uri}?code={user_code}",
                 "expires_in": tun.code_ttl_s, "interval": tun.poll_interval_s}


def poll_token(conn: Connection, keys: ServiceKeys, device_code: str, now_ms: int) -> dict:
    """RFC 8628 token request: the certificate once accepted, else a Refused with the state."""
    code = conn.execute(select(device_codes)
                        .where(device_codes.c.device_code == device_code)).first()
    if code is None or code.status in ("consumed", "superseded"):
        raise Refused(400, "invalid_grant", "unknown, replaced or already used device code")
    if code.last_poll_ms is not None and now_ms - code.last_poll_ms < code.interval_ms:
        interval_ms = code.interval_ms + int(protocol.SLOW_DOWN_STEP_S * 1000)
        conn.execute(update(device_codes).where(device_codes.c.device_code == device_code)
                     .values(interval_ms=interval_ms, last_poll_ms=now_ms))
        raise Refused(400, protocol.SLOW_DOWN, "polling faster than the interval",
                      interval=interval_ms / 1000)
    conn.execute(update(device_codes).where(device_codes.c.device_code == device_code)
                 .values(last_poll_ms=now_ms))
    device = conn.execute(select(devices).where(devices.c.serial == code.serial)).one()
    if device.state == "rejected" or code.status == "denied":
        raise Refused(400, protocol.DENIED, f"device {code.serial} was rejected by an admin")
    if device.state == "accepted" and not device.cert_fingerprint:
        conn.execute(update(device_codes).where(device_codes.c.device_code == device_code)
                     .values(status="consumed"))
        return _issue(conn, keys, code.serial, device.csr_pem, now_ms // 1000)
    if now_ms // 1000 >= code.expires_at:
        raise Refused(400, protocol.EXPIRED, "the activation code expired; enrol again")
    raise Refused(400, protocol.PENDING, "waiting for an admin")


def approve_code(conn: Connection, keys: ServiceKeys, tun: Tunables, user_code: str,
                 fields: dict, approve: bool, client: str, now: int) -> str:
    """An admin approves (with a room) or denies the box showing ``user_code``; returns serial.

    Wrong codes count against ``client``; past the limit every attempt gets 429, so codes
    cannot be guessed even with a stolen admin token.
    """
    window_start = (now - tun.code_failure_window_s) * 1000
    failures = conn.execute(select(func.count()).select_from(code_failures).where(
        code_failures.c.client == client, code_failures.c.at_ms >= window_start)).scalar()
    if failures >= tun.code_failure_limit:
        raise Refused(429, "rate_limited", f"too many wrong activation codes from {client}; "
                      f"wait up to {tun.code_failure_window_s} s")
    try:
        user_code = protocol.normalise_user_code(user_code)
    except ValueError as exc:
        user_code = None
        reason = str(exc)
    code = None
    if user_code:
        code = conn.execute(select(device_codes).where(
            device_codes.c.user_code == user_code, device_codes.c.status == "pending",
            device_codes.c.expires_at > now)).first()
        reason = f"no pending activation code {user_code} (unknown, expired or used)"
    if code is None:
        conn.execute(insert(code_failures).values(client=client, at_ms=now * 1000))
        record_audit(conn, now, "admin", "code.wrong", user_code or "", client=client)
        raise Refused(404, "unknown_code", reason)
    device = conn.execute(select(devices).where(devices.c.serial == code.serial)).one()
    conn.execute(update(device_codes).where(device_codes.c.device_code == code.device_code)
                 .values(status="approved" if approve else "denied"))
    if approve:
        _accept(conn, keys, device, fields, now, "admin", "code")
    else:
        conn.execute(update(devices).where(devices.c.serial == code.serial)
                     .values(state="rejected"))
        record_audit(conn, now, "admin", "device.reject.code", code.serial)
    return code.serial


def decide_pending(conn: Connection, keys: ServiceKeys, serial: str, fields: dict,
                   accept: bool, now: int) -> None:
    """Path C: an admin accepts (with a room) or rejects a box waiting as pending."""
    row = conn.execute(select(devices).where(devices.c.serial == serial)).first()
    if row is None or row.state != "pending":
        raise Refused(404, "not_pending", f"no pending device {serial!r}"
                      + (f" (it is {row.state})" if row else ""))
    if accept:
        _accept(conn, keys, row, fields, now, "admin", "pending")
    else:
        conn.execute(update(devices).where(devices.c.serial == serial).values(state="rejected"))
        record_audit(conn, now, "admin", "device.reject.pending", serial)


def import_rows(conn: Connection, keys: ServiceKeys, rows: list[dict], now: int) -> dict:
    """Path A: pre-register boxes by serial; a box already waiting is accepted at once."""
    added, accepted, skipped = 0, 0, []
    for row in rows:
        serial = row["serial"]
        fields = room_fields(row)
        existing = conn.execute(select(devices).where(devices.c.serial == serial)).first()
        if existing is None:
            conn.execute(insert(devices).values(serial=serial, state="preregistered",
                                                created_at=now, **{k: "" for k in ROOM_FIELDS}
                                                | fields))
            added += 1
        elif existing.state == "pending":
            _accept(conn, keys, existing, fields, now, "admin", "import")
            accepted += 1
        elif existing.state == "preregistered":
            conn.execute(update(devices).where(devices.c.serial == serial).values(**fields))
            added += 1
        else:
            skipped.append(f"{serial} ({existing.state})")
    record_audit(conn, now, "admin", "devices.import", "", added=added, accepted=accepted,
                 skipped=skipped)
    return {"added": added, "accepted": accepted, "skipped": skipped}
