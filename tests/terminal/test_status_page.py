"""The technician status page: off by default, no default password, short-lived codes,
guess limit, masked read-only status; and what a real browser shows."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket

import aiohttp
import pytest

from hal.profile import load_profile
from terminal.app import Terminal
from terminal.status_page.access import TechnicianAccess, code_digest
from terminal.status_page.server import StatusPage, serve_status_page


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def served():
    """A running terminal on the sim profile with its status page on a loopback port."""
    terminal = Terminal(load_profile("sim"))
    clock = Clock()
    access = TechnicianAccess(clock)
    page = StatusPage(terminal.status, access, "Room 7")
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        server = group.create_task(serve_status_page(page, "127.0.0.1", port, started))
        await asyncio.wait_for(terminal.reached_idle.wait(), 5)
        await asyncio.wait_for(started.wait(), 5)
        yield f"http://127.0.0.1:{port}", access, clock, terminal
        stop.set()
        server.cancel()


def session():
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5), cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_without_a_code_nothing_but_the_sign_in_page(served):
    base, *_ = served
    async with session() as http:
        async with http.get(f"{base}/") as response:
            text = await response.text()
            assert response.status == 200 and "No technician code has been issued for this box" in text
            assert response.headers["X-Frame-Options"] == "DENY" and "default-src 'self'" in response.headers["Content-Security-Policy"]
        async with http.get(f"{base}/api/status") as response:
            assert response.status == 401
        async with http.post(f"{base}/login", data={"code": ""}) as response:
            assert response.status == 403


async def test_a_granted_code_opens_a_session_with_masked_status_until_it_expires(served):
    base, access, clock, terminal = served
    access.grant(code_digest("ABCDE-FGH23"), valid_s=600)
    async with session() as http:
        async with http.post(f"{base}/login", data={"code": "abcde fgh23"}) as response:
            assert response.status == 200 and str(response.url).endswith("/")   # followed the redirect
            assert "Network and call" in await response.text()
        async with http.get(f"{base}/api/status") as response:
            status = await response.json()
        assert status["state"] == "idle" and status["profile"] == "sim"
        assert status["board"]["model"] == "roombox simulated board"
        clock.now += 601
        async with http.get(f"{base}/api/status") as response:
            assert response.status == 401


async def test_wrong_codes_are_limited_per_client(served):
    base, access, _, _ = served
    access.grant(code_digest("RIGHT-CODE2"), valid_s=600)
    async with session() as http:
        statuses = []
        for guess in range(6):
            async with http.post(f"{base}/login", data={"code": f"WRONG-{guess:05d}"}) as response:
                statuses.append(response.status)
        async with http.post(f"{base}/login", data={"code": "RIGHT-CODE2"}) as response:
            blocked = response.status
    assert statuses == [403] * 5 + [429] and blocked == 429


def test_grants_are_checked():
    access = TechnicianAccess()
    with pytest.raises(ValueError, match="code_sha256 must be 64 lowercase hex digits"):
        access.grant("1234", 60)
    with pytest.raises(ValueError, match="valid_s must be between 1 and 28800, got 86400"):
        access.grant(code_digest("X"), 86400)
    code, _ = access.issue_local()
    assert len(code) == 11 and code[5] == "-" and access.login("me", code) is not None


@pytest.mark.skipif(not __import__("tests.browser", fromlist=["x"]).chromium_binary(),
                    reason="chromium is not installed (make test installs it: deps/apt.txt)")
async def test_a_technician_signs_in_with_chromium_and_sees_the_live_page(served, tmp_path):
    from tests.browser import Browser

    base, access, _, terminal = served
    code, _ = access.issue_local(valid_s=300)
    async with Browser(1280, 900) as page:
        await page.goto(f"{base}/")
        assert "Enter the code IT gave you" in await page.evaluate("document.body.innerText")
        await page.evaluate(f"document.getElementById('code').value = {code!r}")
        await page.evaluate("document.querySelector('form').submit()")
        await page.wait_for("document.getElementById('updated') && "
                            "document.getElementById('updated').textContent.startsWith('updated')")
        text = await page.evaluate("document.body.innerText")
        shot = await page.screenshot(tmp_path / "status-page.png")
        if os.environ.get("ROOMBOX_KEEP_SCREENSHOTS"):
            shutil.copy(shot, os.environ["ROOMBOX_KEEP_SCREENSHOTS"])
    assert "idle" in text and "ready" in text
    assert "roombox simulated board" in text and "all present" in text
    assert "not in a call" in text
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
