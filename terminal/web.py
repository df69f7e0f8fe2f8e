"""Serving a small aiohttp application from the terminal's event loop (metrics, status page)."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger("roombox.web")


async def serve_app(app: web.Application, host: str, port: int, name: str,
                    started: asyncio.Event | None = None) -> None:
    """Serve ``app`` until cancelled. A port in use is logged and the terminal goes on: these
    pages are for IT and technicians; the room's call never depends on them."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            log.warning("%s: cannot listen on %s:%d (%s)", name, host, port, exc.strerror)
            return
        log.info("%s: serving http://%s:%d/", name, host, port)
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
