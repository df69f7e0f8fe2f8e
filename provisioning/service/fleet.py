"""Enrolled boxes: check-in, config publishing, signed commands, the device list.

Like ``enrolment``, each function runs in the caller's transaction and raises ``Refused``
for requests the service turns down.
"""
from __future__ import annotations

import json
import random
import uuid

from sqlalchemy import Connection, delete, func, insert, select, update

from .. import crypto, protocol
from ..errors import ConfigRejected
from ..schema import COMMAND_KINDS, COMMAND_TYP, parse_command_args, parse_settings
from .db import commands, configs, device_codes, devices
from .enrolment import Refused, Tunables, record_audit, sign_config
from .keys import ServiceKeys

MAX_HEALTH_BYTES = 8 * 1024
RESULT_STATUSES = ("done", "failed", "refused")


def authenticate(conn: Connection, serial: str, fingerprint: str):
    """The accepted device whose current certificate was presented, else 401/403."""
    row = conn.execute(select(devices).where(devices.c.serial == serial)).first()
    if row is None or row.state != "accepted":
        raise Refused(403, protocol.DENIED, f"device {serial!r} is not accepted")
    if row.cert_fingerprint != fingerprint:
        # A certificate the CA signed but the service replaced or revoked.
        raise Refused(401, "unknown_certificate", f"certificate is not current for {serial!r}")
    return row


def checkin(conn: Connection, tun: Tunables, serial: str, fingerprint: str, body: dict,
            now: int) -> dict:
    """Record a box's health and results; answer desired config version, next poll, commands."""
    authenticate(conn, serial, fingerprint)
    health = json.dumps(body.get("health", {}), sort_keys=True)
    if len(health) > MAX_HEALTH_BYTES:
        raise Refused(413, "health_too_large", f"health summary over {MAX_HEALTH_BYTES} bytes")
    config_version = body.get("config_version")
    if config_version is not None and not isinstance(config_version, int):
        raise Refused(400, "invalid_request",
                      f"config_version must be an integer, got {config_version!r}")
    conn.execute(update(devices).where(devices.c.serial == serial).values(
        last_seen=now, health=health, config_version=config_version,
        config_status=json.dumps(body.get("config_status") or {}, sort_keys=True)))
    for result in body.get("command_results") or []:
        status = result.get("status")
        if status not in RESULT_STATUSES:
            raise Refused(400, "invalid_request", f"command_results[].status must be one of "
                          f"{', '.join(RESULT_STATUSES)}, got {status!r}")
        conn.execute(update(commands).where(commands.c.id == str(result.get("id")),
                                            commands.c.serial == serial,
                                            commands.c.status == "pending")
                     .values(status=status, result=str(result.get("detail", ""))[:1000]))
    desired = conn.execute(select(func.max(configs.c.version))
                           .where(configs.c.serial == serial)).scalar() or 0
    pending = conn.execute(select(commands.c.document).where(
        commands.c.serial == serial, commands.c.status == "pending",
        commands.c.expires_at > now).order_by(commands.c.created_at)).scalars().all()
    # Jitter here as well as on the box: the service spreads a fleet that came up together.
    next_s = tun.checkin_interval_s * random.uniform(1 - protocol.CHECKIN_JITTER,
                                                     1 + protocol.CHECKIN_JITTER)
    return {"desired_config_version": desired, "next_checkin_s": round(next_s, 3),
            "commands": list(pending)}


def latest_config(conn: Connection, serial: str, fingerprint: str) -> dict:
    authenticate(conn, serial, fingerprint)
    row = conn.execute(select(configs.c.version, configs.c.document)
                       .where(configs.c.serial == serial)
                       .order_by(configs.c.version.desc()).limit(1)).first()
    if row is None:
        raise Refused(404, "no_config", f"no config published for {serial!r}")
    return {"version": row.version, "document": row.document}


def publish_config(conn: Connection, keys: ServiceKeys, serial: str, settings: dict,
                   ttl_s: int, now: int) -> int:
    """Sign ``settings`` as the next config version of an accepted box."""
    row = conn.execute(select(devices.c.state).where(devices.c.serial == serial)).first()
    if row is None or row.state != "accepted":
        raise Refused(404, "not_accepted", f"no accepted device {serial!r}")
    try:
        parsed = parse_settings(settings)
    except ConfigRejected as exc:
        raise Refused(422, "invalid_settings", str(exc)) from None
    version = sign_config(conn, keys, serial, parsed, now, ttl_s)
    record_audit(conn, now, "admin", "config.publish", serial, version=version)
    return version


def issue_command(conn: Connection, keys: ServiceKeys, serial: str, kind: str, args: dict,
                  ttl_s: int, now: int) -> str:
    """Sign a one-shot command for an accepted box; returns its id."""
    if kind not in COMMAND_KINDS:
        raise Refused(422, "invalid_command",
                      f"command must be one of {', '.join(COMMAND_KINDS)}, got {kind!r}")
    try:
        parse_command_args(kind, args)
    except ConfigRejected as exc:
        raise Refused(422, "invalid_command", str(exc)) from None
    row = conn.execute(select(devices.c.state).where(devices.c.serial == serial)).first()
    if row is None or row.state != "accepted":
        raise Refused(404, "not_accepted", f"no accepted device {serial!r}")
    command_id = uuid.uuid4().hex
    document = crypto.sign_document({"jti": command_id, "sub": serial, "cmd": kind, "iat": now,
                                     "exp": now + ttl_s, "args": args},
                                    keys.signing_key_pem, COMMAND_TYP)
    conn.execute(insert(commands).values(id=command_id, serial=serial, kind=kind,
                                         document=document, created_at=now,
                                         expires_at=now + ttl_s, status="pending"))
    record_audit(conn, now, "admin", "command.issue", serial, id=command_id, kind=kind)
    return command_id


def list_devices(conn: Connection, state: str | None = None) -> list[dict]:
    query = select(devices).order_by(devices.c.serial)
    if state:
        query = query.where(devices.c.state == state)
    out = []
    for row in conn.execute(query):
        out.append({"serial": row.serial, "state": row.state, "site": row.site,
                    "room": row.room, "hardware_profile": row.hardware_profile,
                    "last_seen": row.last_seen, "config_version": row.config_version,
                    "health": json.loads(row.health) if row.health else None,
                    "config_status": json.loads(row.config_status) if row.config_status
                    else None})
    return out


def list_commands(conn: Connection, serial: str) -> list[dict]:
    rows = conn.execute(select(commands).where(commands.c.serial == serial)
                        .order_by(commands.c.created_at))
    return [{"id": r.id, "kind": r.kind, "status": r.status, "result": r.result,
             "expires_at": r.expires_at} for r in rows]


def remove_device(conn: Connection, serial: str, now: int) -> None:
    """Forget a box: its certificate stops working and it may enrol afresh.

    Its signed configs are kept so versions keep rising if the same box comes back (the box
    refuses a version not above the one it last committed).
    """
    found = conn.execute(delete(devices).where(devices.c.serial == serial)).rowcount
    if not found:
        raise Refused(404, "unknown_device", f"no device {serial!r}")
    conn.execute(delete(device_codes).where(device_codes.c.serial == serial))
    conn.execute(update(commands).where(commands.c.serial == serial,
                                        commands.c.status == "pending")
                 .values(status="cancelled", result="device removed"))
    record_audit(conn, now, "admin", "device.remove", serial)
