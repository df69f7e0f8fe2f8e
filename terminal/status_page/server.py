"""The status page's HTTP server (aiohttp): login with a technician code, then a read-only
page that polls /api/status once a second."""
from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Any, Callable

from aiohttp import web

from terminal.diag import mask_secrets
from terminal.status_page.access import TechnicianAccess
from terminal.web import serve_app

log = logging.getLogger("roombox.status_page")

COOKIE = "roombox_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_CODE_CHARS = 32


def _static(name: str) -> str:
    return (resources.files("terminal.status_page") / "static" / name).read_text(encoding="utf-8")


class StatusPage:
    """``status()`` is the terminal's aggregate; ``access`` decides who may read it."""

    def __init__(self, status: Callable[[], dict[str, Any]], access: TechnicianAccess, box_name: str) -> None:
        self.status = status
        self.access = access
        self.box_name = box_name
        self.app = web.Application(middlewares=[self._headers], client_max_size=4096)
        self.app.router.add_get("/", self.index)
        self.app.router.add_post("/login", self.login)
        self.app.router.add_post("/logout", self.logout)
        self.app.router.add_get("/api/status", self.api_status)
        for name, kind in (("app.js", "application/javascript"), ("style.css", "text/css")):
            self.app.router.add_get(f"/{name}", self._asset(name, kind))

    @web.middleware
    async def _headers(self, request: web.Request, handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _asset(self, name: str, kind: str):
        body = _static(name)

        async def serve(_: web.Request) -> web.Response:
            return web.Response(text=body, content_type=kind)
        return serve

    def _signed_in(self, request: web.Request) -> bool:
        return self.access.session_valid(request.cookies.get(COOKIE))

    def _page(self, name: str, **fields: str) -> web.Response:
        html = _static(name).replace("{{box}}", _escape(self.box_name))
        for key, value in fields.items():
            html = html.replace("{{" + key + "}}", value)
        return web.Response(text=html, content_type="text/html")

    async def index(self, request: web.Request) -> web.Response:
        if self._signed_in(request):
            return self._page("status.html")
        return self._login_page("")

    def _login_page(self, message: str, status: int = 200) -> web.Response:
        if not self.access.has_grants:
            message = message or ("No technician code has been issued for this box. Ask IT to issue one "
                                  "through provisioning, or run <code>roombox technician-code</code> on the box.")
        response = self._page("login.html", message=message)
        response.set_status(status)
        return response

    async def login(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        if self.access.is_blocked(client):
            log.warning("status page: too many wrong codes from %s", client)
            return self._login_page("Too many wrong codes. Wait a minute and try again.", 429)
        form = await request.post()
        code = str(form.get("code", ""))[:MAX_CODE_CHARS]
        session = self.access.login(client, code)
        if session is None:
            log.info("status page: wrong or expired code from %s", client)
            return self._login_page("That code is wrong or has expired.", 403)
        token, expires_at = session
        log.info("status page: technician signed in from %s", client)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            max_age=max(1, int(expires_at - self.access.now())))
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def api_status(self, request: web.Request) -> web.Response:
        if not self._signed_in(request):
            return web.json_response({"error": "sign in with a technician code"}, status=401)
        return web.json_response(mask_secrets(self.status()), dumps=lambda v: json.dumps(v, default=str))


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


async def serve_status_page(page: StatusPage, host: str, port: int, started: asyncio.Event | None = None) -> None:
    """Serve until cancelled. A port in use is logged; the box goes on without the page."""
    await serve_app(page.app, host, port, "status page", started)
