"""The ASGI application: device endpoints (enrolment, mTLS check-in) and the admin API.

Database work is synchronous SQLAlchemy in FastAPI's thread pool (plain ``def`` routes),
one transaction per request. A ``Refused`` raised inside a transaction still commits it:
the slow_down interval and failed-code counters must persist exactly when we say no.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from .. import protocol
from ..crypto import cert_common_name
from ..errors import ConfigRejected
from . import activation, enrolment, fleet
from .db import audit, transaction
from .enrolment import Refused, Tunables
from .keys import ServiceKeys

MAX_DEVICE_BODY_BYTES = 64 * 1024          # a CSR, a health summary: a few KiB in practice
MAX_ADMIN_BODY_BYTES = 16 * 1024 * 1024    # a CSV import of tens of thousands of boxes


class BodyLimit:
    """ASGI middleware: 413 for request bodies over the limit, before anything parses them.

    Checks Content-Length up front and counts streamed (chunked) bodies as they arrive.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = (MAX_ADMIN_BODY_BYTES if scope["path"].startswith("/v1/admin/")
                 else MAX_DEVICE_BODY_BYTES)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(send, limit)
        seen, refused = 0, False

        async def counted():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                # Answer now and tell the app the client left; whatever it sends is dropped.
                refused = True
                await _too_large(send, limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"error": "too_large",
                       "detail": f"request body must be at most {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class EnrolRequest(BaseModel):
    serial: str = Field(min_length=1, max_length=128)
    csr: str = Field(max_length=8192)
    hardware_profile: str = Field(default="", max_length=200)


class TokenRequest(BaseModel):
    device_code: str = Field(max_length=128)


class CheckinRequest(BaseModel):
    health: dict[str, Any] = {}
    config_version: int | None = None
    config_status: dict[str, Any] | None = None
    command_results: list[dict[str, Any]] = []


class RoomFields(BaseModel):
    site: str | None = None
    room: str | None = None
    meeting_url: str | None = None
    calendar_url: str | None = None
    hardware_profile: str | None = None


class ImportRequest(BaseModel):
    rows: list[dict[str, str]]


class ConfigRequest(BaseModel):
    settings: dict[str, Any]
    ttl_s: int = Field(default=protocol.CONFIG_TTL_S, ge=60, le=365 * 24 * 3600)


class CommandRequest(BaseModel):
    kind: str
    args: dict[str, Any] = {}
    ttl_s: int = Field(default=protocol.COMMAND_TTL_S, ge=10, le=7 * 24 * 3600)


def create_app(keys: ServiceKeys, engine: Engine, tun: Tunables | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """Build the service. ``clock`` returns Unix seconds (tests move it to expire things)."""
    tun = tun or Tunables()
    app = FastAPI(title="roombox provisioning", version="1",
                  description="Zero-touch provisioning for roombox meeting-room terminals.")
    app.add_middleware(BodyLimit)

    def run(work: Callable, *, status: int = 200):
        refused = None
        with transaction(engine) as conn:
            try:
                result = work(conn)
            except Refused as exc:
                refused = exc
            except ConfigRejected as exc:
                refused = Refused(422, "invalid_settings", str(exc))
        if refused is not None:
            return JSONResponse(refused.body, status_code=refused.status)
        if isinstance(result, tuple):
            status, result = result
        return JSONResponse(result, status_code=status)

    def admin(authorization: str = Header(default="")) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not keys.token_ok(token.strip()):
            raise _Unauthorized()

    def device(request: Request) -> tuple[str, str]:
        """(serial, certificate fingerprint) from the verified TLS client certificate."""
        tls = request.scope.get("extensions", {}).get("tls", {})
        der = tls.get("client_cert_der")
        if not der:
            raise _Unauthorized("a device certificate (mutual TLS) is required")
        return cert_common_name(der), hashlib.sha256(der).hexdigest()

    @app.exception_handler(_Unauthorized)
    def _unauthorized(_request, exc: "_Unauthorized"):
        return JSONResponse({"error": "unauthorized", "detail": str(exc)}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # --- device side ---------------------------------------------------------------------
    @app.get(protocol.CA_PATH, response_class=PlainTextResponse, tags=["device"])
    def ca_pem():
        """The CA certificate; boxes compare its SHA-256 with their pinned fingerprint."""
        return PlainTextResponse(keys.ca_pem.decode(), media_type="application/x-pem-file")

    @app.post(protocol.ENROL_PATH, tags=["device"])
    def enrol(body: EnrolRequest, request: Request):
        return run(lambda c: enrolment.enrol(c, keys, tun, body.serial, body.csr,
                                             body.hardware_profile, base_url(request),
                                             int(clock())))

    @app.post(protocol.TOKEN_PATH, tags=["device"])
    def token(body: TokenRequest):
        return run(lambda c: enrolment.poll_token(c, keys, body.device_code,
                                                  int(clock() * 1000)))

    @app.post(protocol.CHECKIN_PATH, tags=["device"])
    def checkin(body: CheckinRequest, who: tuple[str, str] = Depends(device)):
        return run(lambda c: fleet.checkin(c, tun, who[0], who[1], body.model_dump(),
                                           int(clock())))

    @app.get(protocol.CONFIG_PATH, tags=["device"])
    def config(who: tuple[str, str] = Depends(device)):
        return run(lambda c: fleet.latest_config(c, who[0], who[1]))

    @app.get(protocol.ACTIVATE_PATH, response_class=HTMLResponse, tags=["device"])
    def activate(code: str = ""):
        """Where the QR code on a box points: a form to approve that code for a room."""
        return HTMLResponse(activation.page(code))

    @app.post(protocol.ACTIVATE_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def activate_submit(request: Request):
        form = activation.parse_form(await request.body())
        code = form.get("code", "")
        if not keys.token_ok(form.get("token", "")):
            return HTMLResponse(activation.page(code, form, "wrong admin token"), 401)
        fields = {k: form[k] for k in enrolment.ROOM_FIELDS if form.get(k)}
        client = request.client.host if request.client else "?"
        answer = await run_in_threadpool(run, lambda c: {"serial": enrolment.approve_code(
            c, keys, tun, code, enrolment.room_fields(fields), True, client, int(clock()))})
        body = json.loads(answer.body)
        if answer.status_code != 200:
            return HTMLResponse(activation.page(code, form, body["detail"]), answer.status_code)
        return HTMLResponse(activation.done(body["serial"], fields.get("room", "")))

    # --- admin side ----------------------------------------------------------------------
    guard = [Depends(admin)]

    @app.post("/v1/admin/devices/import", dependencies=guard, tags=["admin"])
    def import_devices(body: ImportRequest):
        columns = ("serial",) + enrolment.ROOM_FIELDS
        for i, row in enumerate(body.rows, start=2):   # line 1 of the CSV is the header
            for key in row:
                if key not in columns:
                    return JSONResponse({"error": "invalid_csv", "detail": (
                        f"line {i}: column {key!r} must be one of {', '.join(columns)}")},
                        status_code=422)
            if not row.get("serial"):
                return JSONResponse({"error": "invalid_csv",
                                     "detail": f"line {i}: serial is required, got nothing"},
                                    status_code=422)
        return run(lambda c: enrolment.import_rows(c, keys, body.rows, int(clock())))

    @app.get("/v1/admin/devices", dependencies=guard, tags=["admin"])
    def devices(state: str | None = None):
        return run(lambda c: {"devices": fleet.list_devices(c, state)})

    @app.post("/v1/admin/codes/{user_code}/approve", dependencies=guard, tags=["admin"])
    def approve(user_code: str, body: RoomFields, request: Request):
        fields = body.model_dump(exclude_none=True)
        return run(lambda c: {"serial": enrolment.approve_code(
            c, keys, tun, user_code, enrolment.room_fields(fields), True,
            request.client.host if request.client else "?", int(clock()))})

    @app.post("/v1/admin/codes/{user_code}/deny", dependencies=guard, tags=["admin"])
    def deny(user_code: str, request: Request):
        return run(lambda c: {"serial": enrolment.approve_code(
            c, keys, tun, user_code, {}, False,
            request.client.host if request.client else "?", int(clock()))})

    @app.post("/v1/admin/devices/{serial}/accept", dependencies=guard, tags=["admin"])
    def accept(serial: str, body: RoomFields):
        fields = body.model_dump(exclude_none=True)
        return run(lambda c: enrolment.decide_pending(
            c, keys, serial, enrolment.room_fields(fields), True, int(clock())) or
            {"serial": serial, "state": "accepted"})

    @app.post("/v1/admin/devices/{serial}/reject", dependencies=guard, tags=["admin"])
    def reject(serial: str):
        return run(lambda c: enrolment.decide_pending(c, keys, serial, {}, False, int(clock()))
                   or {"serial": serial, "state": "rejected"})

    @app.delete("/v1/admin/devices/{serial}", dependencies=guard, tags=["admin"])
    def remove(serial: str):
        """Forget a box (revokes its certificate); it can then enrol again."""
        return run(lambda c: fleet.remove_device(c, serial, int(clock())) or
                   {"serial": serial, "state": "removed"})

    @app.post("/v1/admin/devices/{serial}/config", dependencies=guard, tags=["admin"])
    def publish(serial: str, body: ConfigRequest):
        return run(lambda c: {"serial": serial, "version": fleet.publish_config(
            c, keys, serial, body.settings, body.ttl_s, int(clock()))})

    @app.post("/v1/admin/devices/{serial}/commands", dependencies=guard, tags=["admin"])
    def command(serial: str, body: CommandRequest):
        return run(lambda c: {"id": fleet.issue_command(c, keys, serial, body.kind, body.args,
                                                        body.ttl_s, int(clock()))})

    @app.get("/v1/admin/devices/{serial}/commands", dependencies=guard, tags=["admin"])
    def commands(serial: str):
        return run(lambda c: {"commands": fleet.list_commands(c, serial)})

    @app.get("/v1/admin/audit", dependencies=guard, tags=["admin"])
    def audit_log(limit: int = 100):
        def work(c):
            rows = c.execute(select(audit).order_by(audit.c.id.desc()).limit(min(limit, 1000)))
            return {"audit": [{"at": r.at, "actor": r.actor, "action": r.action,
                               "target": r.target, "detail": r.detail} for r in rows]}
        return run(work)

    return app


class _Unauthorized(Exception):
    def __init__(self, detail: str = "admin token required"):
        super().__init__(detail)
