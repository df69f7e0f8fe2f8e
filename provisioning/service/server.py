"""Run the service over HTTPS with uvicorn, asking boxes for their device certificate.

uvicorn verifies a presented client certificate against our CA (``CERT_OPTIONAL``: enrolment
happens before a box has one) but does not pass it to the app, so ``_ClientCertH11`` adds
it to each request's scope as the ASGI TLS extension (``scope["extensions"]["tls"]``).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .db import open_database
from .enrolment import Tunables
from .keys import ServiceKeys

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 15
GRACEFUL_SHUTDOWN_S = 10   # well inside systemd's default 90 s stop timeout


class _ClientCertH11(H11Protocol):
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        inner = self.app

        async def with_tls(scope, receive, send):
            if scope["type"] == "http":
                scope = dict(scope)
                scope["extensions"] = {**scope.get("extensions", {}),
                                       "tls": {"client_cert_der": der,
                                               "tls_used": ssl_object is not None}}
            await inner(scope, receive, send)

        self.app = with_tls


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT``; raises ValueError naming the value."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT like 127.0.0.1:8443, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def uvicorn_config(keys: ServiceKeys, app, **kw) -> uvicorn.Config:
    return uvicorn.Config(app, http=_ClientCertH11, lifespan="off",
                          ssl_certfile=str(keys.tls_cert_path), ssl_keyfile=str(keys.tls_key_path),
                          ssl_ca_certs=str(keys.ca_cert_path), ssl_cert_reqs=ssl.CERT_OPTIONAL,
                          log_level="warning", timeout_keep_alive=30, backlog=4096, **kw)


def serve(keys: ServiceKeys, listen: str, database_url: str | None = None,
          tun: Tunables | None = None) -> None:
    """Blocking: run the service until interrupted."""
    host, port = parse_listen(listen)
    engine = open_database(database_url or keys.database_url)
    app = create_app(keys, engine, tun)
    log.warning("provisioning: serving on https://%s:%d (database %s)", host, port,
                engine.url.render_as_string(hide_password=True))
    uvicorn.Server(uvicorn_config(keys, app, host=host, port=port,
                                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)).run()


class ServiceThread:
    """The service on a loopback port in a background thread (tests, benchmark).

    Use as a context manager; ``url`` is ready when ``__enter__`` returns.
    """

    def __init__(self, keys: ServiceKeys, database_url: str, tun: Tunables | None = None,
                 clock=None):
        self.engine = open_database(database_url)
        kwargs = {"clock": clock} if clock else {}
        self.app = create_app(keys, self.engine, tun, **kwargs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        # Short graceful shutdown: a box cancelled mid-poll may leave a connection open.
        self._server = uvicorn.Server(uvicorn_config(keys, self.app,
                                                     timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._run, name="provisioning-service",
                                        daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> "ServiceThread":
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # uvicorn offers no start-up callback; its ``started`` flag flips once it listens.
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"provisioning service did not start within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(STARTUP_TIMEOUT_S)
        self._sock.close()
        self.engine.dispose()
