"""``roombox server ...`` (run the reference service) and ``roombox admin ...`` (manage it).

The admin commands talk to the admin API over HTTPS with the token printed by
``server init``: pass it with ``--token-file`` or ``ROOMBOX_ADMIN_TOKEN``. The service CA
comes from ``--ca`` (or ``--data DIR``), so admin traffic is verified too.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import sys
import tomllib
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_URL = "https://127.0.0.1:8443"
CSV_COLUMNS = ("serial", "site", "room", "meeting_url", "calendar_url", "hardware_profile")
ADMIN_TIMEOUT_S = 30
TECHNICIAN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"   # no 0/O or 1/I to misread


def register(subparsers) -> None:
    server = subparsers.add_parser("server", help="the reference provisioning service")
    ssub = server.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    p = ssub.add_parser("init", help="make the CA, signing key, TLS certificate and admin token")
    p.add_argument("--data", type=Path, required=True, help="service data directory")
    p.add_argument("--name", action="append", dest="names", metavar="NAME",
                   help="DNS name or IP the service is reached at (repeatable; "
                        "default localhost, 127.0.0.1, ::1)")
    p.add_argument("--database", help="SQLAlchemy URL (default SQLite in --data), e.g. "
                   "postgresql+psycopg://roombox@db/roombox")
    p.add_argument("--force", action="store_true", help="replace an existing CA (re-enrol all)")
    p.set_defaults(func=_server_init)
    p = ssub.add_parser("run", help="serve HTTPS (loopback unless --listen says otherwise)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT (default {DEFAULT_LISTEN})")
    p.add_argument("--database", help="override the database URL from init")
    p.set_defaults(func=_server_run)

    admin = subparsers.add_parser("admin", help="manage boxes through the provisioning service")
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = asub.add_parser(name, help=help_text)
        p.add_argument("--url", default=os.environ.get("ROOMBOX_PROV_URL", DEFAULT_URL))
        p.add_argument("--ca", type=Path, help="service CA certificate (PEM)")
        p.add_argument("--data", type=Path, help="service data directory (for its ca.pem)")
        p.add_argument("--token-file", type=Path, help="file holding the admin token")
        p.set_defaults(func=func)
        return p

    def room_args(p: argparse.ArgumentParser) -> None:
        for column in CSV_COLUMNS[1:]:
            p.add_argument(f"--{column.replace('_', '-')}", dest=column)

    p = add("import", _admin_import,
            "pre-register boxes from a CSV (" + ",".join(CSV_COLUMNS) + ")")
    p.add_argument("csv", type=Path)
    p = add("devices", _admin_devices, "list boxes with state, room, last seen, config version")
    p.add_argument("--state", choices=("preregistered", "pending", "accepted", "rejected"))
    p.add_argument("--json", action="store_true")
    p = add("approve", _admin_approve, "approve the activation code a box shows, for a room")
    p.add_argument("code")
    room_args(p)
    p = add("deny", _admin_deny, "deny an activation code (the box is rejected)")
    p.add_argument("code")
    p = add("accept", _admin_accept, "accept a pending box for a room")
    p.add_argument("serial")
    room_args(p)
    p = add("reject", _admin_reject, "reject a pending box")
    p.add_argument("serial")
    p = add("remove", _admin_remove, "forget a box (revokes its certificate) so it can re-enrol")
    p.add_argument("serial")
    p = add("publish", _admin_publish, "sign and publish settings (TOML or JSON) to a box")
    p.add_argument("serial")
    p.add_argument("settings", type=Path)
    p = add("command", _admin_command, "send a signed command to a box")
    p.add_argument("serial")
    p.add_argument("kind", choices=("reboot", "rejoin", "identify", "selftest",
                                    "collect_diagnostics", "technician_access"))
    p.add_argument("--ttl", type=int, default=900, help="seconds until it expires")
    p.add_argument("--valid", type=int, default=3600, metavar="SECONDS",
                   help="technician_access: how long the printed code opens the status page")
    p = add("audit", _admin_audit, "show the audit log")
    p.add_argument("--limit", type=int, default=50)


# --- server -----------------------------------------------------------------------------

def _server_init(args) -> int:
    from .service.keys import ServiceInitError, init_service
    try:
        token = init_service(args.data, args.names, args.database, args.force)
    except (ServiceInitError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    from . import crypto
    pin = crypto.fingerprint((args.data / "ca.pem").read_bytes())
    print(f"service data in {args.data}")
    print(f"CA fingerprint (pin this in provisioning.toml as ca_sha256): {pin}")
    print(f"admin token (shown once, stored only as a hash): {token}")
    return 0


def _server_run(args) -> int:
    from .service.keys import ServiceInitError, ServiceKeys
    from .service.server import serve
    try:
        keys = ServiceKeys.load(args.data)
        serve(keys, args.listen, args.database)
    except (ServiceInitError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


# --- admin ------------------------------------------------------------------------------

class AdminError(Exception):
    pass


def _call(args, method: str, path: str, body: dict | None = None) -> dict:
    import httpx
    token = os.environ.get("ROOMBOX_ADMIN_TOKEN", "")
    if args.token_file:
        token = args.token_file.read_text().strip()
    if not token:
        raise AdminError("admin: no token; use --token-file or set ROOMBOX_ADMIN_TOKEN")
    ca = args.ca or (args.data / "ca.pem" if args.data else None)
    if ca is None:
        raise AdminError("admin: pass --ca CA.pem or --data DIR so the service can be verified")
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        resp = httpx.request(method, args.url.rstrip("/") + path, json=body, verify=ctx,
                             headers={"Authorization": f"Bearer {token}"},
                             timeout=ADMIN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise AdminError(f"admin: {method} {args.url}{path} failed ({exc})") from None
    try:
        data = resp.json()
    except ValueError:
        data = {"detail": resp.text}
    if resp.status_code >= 400:
        detail = data.get("detail")
        if isinstance(detail, list):     # FastAPI validation errors
            detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
        raise AdminError(f"admin: HTTP {resp.status_code} {data.get('error', '')}: {detail}")
    return data


def _admin(fn):
    def wrapper(args) -> int:
        try:
            return fn(args)
        except (AdminError, OSError, ValueError) as exc:
            print(exc, file=sys.stderr)
            return 1
    return wrapper


def read_csv(path: Path) -> list[dict]:
    """Rows of a pre-registration CSV; raises ValueError naming the line and column."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in header:
            if column not in CSV_COLUMNS:
                raise ValueError(f"{path}: column {column!r} must be one of "
                                 f"{', '.join(CSV_COLUMNS)}")
        if "serial" not in header:
            raise ValueError(f"{path}: needs a serial column, got {header}")
        rows = []
        for row in reader:
            if not (row.get("serial") or "").strip():
                raise ValueError(f"{path}: line {reader.line_num}: serial is empty")
            rows.append({k: (v or "").strip() for k, v in row.items()})
        return rows


def _room(args) -> dict:
    return {c: getattr(args, c) for c in CSV_COLUMNS[1:] if getattr(args, c, None)}


@_admin
def _admin_import(args) -> int:
    out = _call(args, "POST", "/v1/admin/devices/import", {"rows": read_csv(args.csv)})
    print(f"added {out['added']}, accepted {out['accepted']} waiting boxes"
          + (f", skipped {', '.join(out['skipped'])}" if out["skipped"] else ""))
    return 0


@_admin
def _admin_devices(args) -> int:
    query = f"?state={args.state}" if args.state else ""
    devices = _call(args, "GET", f"/v1/admin/devices{query}")["devices"]
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    print(f"{'SERIAL':<20} {'STATE':<14} {'SITE/ROOM':<28} {'CONFIG':>6}  LAST SEEN")
    for d in devices:
        room = f"{d['site']}/{d['room']}" if d["site"] or d["room"] else "-"
        print(f"{d['serial']:<20} {d['state']:<14} {room:<28} {d['config_version'] or '-':>6}  "
              f"{d['last_seen'] or '-'}")
    return 0


@_admin
def _admin_approve(args) -> int:
    out = _call(args, "POST", f"/v1/admin/codes/{args.code}/approve", _room(args))
    print(f"approved {out['serial']}")
    return 0


@_admin
def _admin_deny(args) -> int:
    print(f"denied {_call(args, 'POST', f'/v1/admin/codes/{args.code}/deny')['serial']}")
    return 0


@_admin
def _admin_accept(args) -> int:
    _call(args, "POST", f"/v1/admin/devices/{args.serial}/accept", _room(args))
    print(f"accepted {args.serial}")
    return 0


@_admin
def _admin_reject(args) -> int:
    _call(args, "POST", f"/v1/admin/devices/{args.serial}/reject")
    print(f"rejected {args.serial}")
    return 0


@_admin
def _admin_remove(args) -> int:
    _call(args, "DELETE", f"/v1/admin/devices/{args.serial}")
    print(f"removed {args.serial}")
    return 0


@_admin
def _admin_publish(args) -> int:
    text = args.settings.read_text()
    settings = json.loads(text) if args.settings.suffix == ".json" else tomllib.loads(text)
    out = _call(args, "POST", f"/v1/admin/devices/{args.serial}/config", {"settings": settings})
    print(f"published version {out['version']} to {args.serial}")
    return 0


@_admin
def _admin_command(args) -> int:
    body = {"kind": args.kind, "ttl_s": args.ttl}
    code = None
    if args.kind == "technician_access":
        # The code is made here and shown once; only its hash goes to the service and box.
        from .schema import technician_code_digest
        raw = "".join(secrets.choice(TECHNICIAN_ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        body["args"] = {"code_sha256": technician_code_digest(code), "valid_s": args.valid}
    out = _call(args, "POST", f"/v1/admin/devices/{args.serial}/commands", body)
    print(f"command {out['id']} ({args.kind}) queued for {args.serial}")
    if code:
        print(f"technician code (valid {args.valid} s once the box has it): {code}")
    return 0


@_admin
def _admin_audit(args) -> int:
    for row in _call(args, "GET", f"/v1/admin/audit?limit={args.limit}")["audit"]:
        print(f"{row['at']} {row['actor']:<6} {row['action']:<24} {row['target']} {row['detail']}")
    return 0
