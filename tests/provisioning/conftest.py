"""Fixtures: a real service on loopback TLS (SQLite or PostgreSQL), boxes, an admin client."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from provisioning import crypto
from provisioning.agent.agent import ProvisioningAgent
from provisioning.agent.discovery import ServiceLocation
from provisioning.service.db import open_database
from provisioning.service.enrolment import Tunables
from provisioning.service.keys import ServiceKeys, init_service
from provisioning.service.server import ServiceThread

EVENT_TIMEOUT_S = 20
PG_START_TIMEOUT_S = 60
PG_TEMPLATE = "roombox_template"


class Clock:
    """Wall clock plus an offset tests move to expire codes, configs and commands."""

    def __init__(self):
        self.offset = 0.0
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        return (self.frozen_at if self.frozen_at is not None else time.time()) + self.offset


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a loopback port, run as a non-root user."""
    pg = _pg_bin()
    if pg is None:
        pytest.fail("PostgreSQL not installed (Debian package postgresql, see deps/apt.txt)")
    root = Path(tempfile.mkdtemp(prefix="roombox-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root; the Debian package makes the postgres user.
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(as_user + [str(pg / "initdb"), "-D", str(data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=PG_START_TIMEOUT_S)
    subprocess.run(as_user + [str(pg / "pg_ctl"), "-D", str(data), "-w", "-t",
                              str(PG_START_TIMEOUT_S), "-l", str(root / "log"), "-o",
                              f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                              "-c fsync=off -c max_connections=200", "start"],
                   check=True, capture_output=True, timeout=PG_START_TIMEOUT_S + 5)
    base = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    # Migrate once into a template; each test clones it (a file copy, no DDL).
    import psycopg
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{PG_TEMPLATE}"')
    open_database(f"{base}/{PG_TEMPLATE}").dispose()
    try:
        yield base
    finally:
        subprocess.run(as_user + [str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "stop"], capture_output=True, timeout=PG_START_TIMEOUT_S)
        shutil.rmtree(root, ignore_errors=True)


_db_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    import psycopg
    base = request.getfixturevalue("postgres_server")
    name = f"roombox_test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{PG_TEMPLATE}"')
    return f"{base}/{name}"


class Service:
    """A running service plus an admin client for it."""

    def __init__(self, thread: ServiceThread, keys: ServiceKeys, token: str, clock: Clock):
        self.thread, self.keys, self.token, self.clock = thread, keys, token, clock
        self.url = thread.url
        self.pin = crypto.fingerprint(keys.ca_pem)
        self.ssl = ssl.create_default_context(cafile=str(keys.ca_cert_path))

    def location(self) -> ServiceLocation:
        return ServiceLocation(self.url, self.pin, "test")

    async def admin(self, method: str, path: str, body: dict | None = None,
                    token: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(verify=self.ssl, timeout=EVENT_TIMEOUT_S) as client:
            return await client.request(method, self.url + path, json=body, headers={
                "Authorization": f"Bearer {token or self.token}"})

    async def device(self, method: str, path: str, body: dict | None = None,
                     cert: tuple[Path, Path] | None = None) -> httpx.Response:
        ctx = ssl.create_default_context(cafile=str(self.keys.ca_cert_path))
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        async with httpx.AsyncClient(verify=ctx, timeout=EVENT_TIMEOUT_S) as client:
            return await client.request(method, self.url + path, json=body)


FAST = Tunables(poll_interval_s=0.2, checkin_interval_s=1.0, code_failure_limit=3)


@pytest.fixture
def service(tmp_path, database_url):
    token = init_service(tmp_path / "service")
    keys = ServiceKeys.load(tmp_path / "service")
    clock = Clock()
    with ServiceThread(keys, database_url, FAST, clock=clock) as thread:
        yield Service(thread, keys, token, clock)


class Box:
    """A simulated box: its agent, the events it posts, and knobs for the terminal's answers."""

    def __init__(self, root: Path, serial: str, service: Service, clock=time.time):
        self.events: asyncio.Queue = asyncio.Queue()
        self.healthy = True
        self.health_reason = ""
        self.in_call = False
        self.checked: list = []
        self.agent = ProvisioningAgent(root / serial, serial, self.events, self._health,
                                       lambda: self.in_call, service.location,
                                       hardware_profile="sim", clock=clock,
                                       health_summary=lambda: {"camera": "ok"},
                                       retry_base_s=0.05)

    async def _health(self, settings):
        self.checked.append(settings)
        return self.healthy, self.health_reason

    async def next_event(self, kind: str | None = None):
        """The next event (of ``kind``, skipping others) within the timeout."""
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while True:
                event = await self.events.get()
                if kind is None or event.kind == kind:
                    return event

    def drain(self) -> list[str]:
        kinds = []
        while not self.events.empty():
            kinds.append(self.events.get_nowait().kind)
        return kinds


@pytest.fixture
def make_box(tmp_path, service):
    def make(serial: str, clock=time.time) -> Box:
        return Box(tmp_path / "boxes", serial, service, clock)
    return make
