"""The terminal provisioned by the real reference service (TLS on loopback, SQLite): a
factory-fresh box comes up unprovisioned, enrols, takes its room's meeting and goes idle;
a configuration that cannot reach its conferencing service is rolled back; signed commands
reach the LEDs, the technician page and the diagnostics bundle."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import socket
import tarfile
import time
from pathlib import Path

import pytest
from aiohttp import web

from hal.profile import load_profile
from terminal.app import MeetingSettings, Terminal
from terminal.commands.call import format_status
from terminal.screen import build
from terminal.state import State
# The provisioning tests' fixtures: a real service thread, its keys and an admin client.
from tests.provisioning.conftest import service  # noqa: F401  (fixture)

WAIT_S = 20.0


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
async def conference():
    """Something answering HTTP where the meeting URL points: the trial's reachability check
    needs an answer, not a full Janus (the meetings tests use the real one)."""
    app = web.Application()

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"janus": "server_info"})
    app.router.add_get("/janus", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"janus+http://127.0.0.1:{port}/janus?room=1234"
    await runner.cleanup()


class Box:
    """A terminal on the sim profile whose provisioning link points at the test service."""

    def __init__(self, tmp_path: Path, service, serial: str, monkeypatch):
        monkeypatch.setenv("ROOMBOX_SIM_SERIAL", serial)
        seeds = tmp_path / "boot"
        seeds.mkdir()
        (seeds / "provisioning.toml").write_text(
            f'[service]\nurl = "{service.url}"\nca_sha256 = "{service.pin}"\n')
        self.terminal = Terminal(load_profile("sim"), MeetingSettings(display_name="roombox"))
        self.terminal.enable_provisioning(state_dir=tmp_path / "state", seed_dirs=(seeds,),
                                          use_dns_sd=False, retry_base_s=0.05)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "Box":
        self.task = asyncio.create_task(self.terminal.run(self.stop))
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT_S):
            await self.task

    async def until(self, predicate, what: str, timeout_s: float = WAIT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.terminal.status()
            if predicate(status):
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; status: {self.terminal.status()}")


async def preregistered(tmp_path, service, monkeypatch, serial: str, room: str, meeting: str) -> Box:
    """A box whose serial IT imported with its room and meeting (enrolment path A)."""
    resp = await service.admin("POST", "/v1/admin/devices/import", {"rows": [{
        "serial": serial, "room": room, "meeting_url": meeting}]})
    assert resp.status_code == 200, resp.text
    return Box(tmp_path, service, serial, monkeypatch)


async def test_fresh_box_on_path_a_reaches_idle_with_its_rooms_meeting(tmp_path, service, conference, monkeypatch):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{
        "serial": "RB-T1", "site": "HQ", "room": "Ada", "meeting_url": conference}]})
    notify_path = tmp_path / "notify"
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(notify_path))
    systemd.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    box = Box(tmp_path, service, "RB-T1", monkeypatch)
    started = time.monotonic()
    async with box:
        status = await box.until(lambda s: s["state"] == "idle", "idle")
        elapsed = time.monotonic() - started
        states = [t.after for t in box.terminal.machine.history]
        assert states[0] == State.UNPROVISIONED, "a fresh box first shows it is unprovisioned"
        print(f"path A: terminal start -> idle with its meeting in {elapsed:.2f} s")
        assert elapsed < 10, f"path A: service reachable -> idle took {elapsed:.1f} s (goal 10 s)"
        assert status["meeting"] == conference
        assert status["room"] == {"name": "Ada"}
        assert status["provisioning"]["state"] == "provisioned"
        await box.until(lambda s: s["provisioning"].get("config_version") == 1, "config version 1 committed")
        assert box.terminal.settings.meeting_url == conference
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(systemd.recv(4096).decode())
    systemd.close()
    reloading = [i for i, m in enumerate(messages) if m.startswith("RELOADING=1")]
    assert reloading and "configuration version 1" in messages[reloading[0]], messages
    assert any(m.startswith("READY=1") for m in messages[reloading[0] + 1:]), "READY again after the reload"


async def test_provisioned_box_boots_straight_to_idle_from_its_committed_config(tmp_path, service, conference, monkeypatch):
    first = await preregistered(tmp_path, service, monkeypatch, "RB-T2", "Babbage", conference)
    async with first:
        await first.until(lambda s: s["provisioning"].get("config_version") == 1, "config committed")
    (tmp_path / "boot").rename(tmp_path / "boot-used")
    again = Box(tmp_path, service, "RB-T2", monkeypatch)
    async with again:
        await again.until(lambda s: s["state"] == "idle", "idle")
        assert [t.after for t in again.terminal.machine.history][0] == State.IDLE, \
            "the committed configuration applies before the first transition"


async def test_unreachable_conferencing_service_rolls_back_to_the_last_good_config(tmp_path, service, conference, monkeypatch):
    box = await preregistered(tmp_path, service, monkeypatch, "RB-T3", "Curie", conference)
    async with box:
        await box.until(lambda s: s["provisioning"].get("config_version") == 1, "version 1 committed")
        dead = "janus+http://127.0.0.1:9/janus?room=1"           # discard port: nothing answers
        resp = await service.admin("POST", "/v1/admin/devices/RB-T3/config",
                                   {"settings": {"room": "Curie", "meeting_url": dead}})
        assert resp.status_code == 200, resp.text
        status = await box.until(lambda s: s["provisioning"].get("last_rollback"), "a rollback")
        assert status["provisioning"]["last_rollback"]["version"] == 2
        assert "conferencing service at http://127.0.0.1:9/janus unreachable" in \
            status["provisioning"]["last_rollback"]["reason"]
        status = await box.until(lambda s: s["meeting"] == conference, "the good meeting back")
        assert status["state"] == "idle" and status["provisioning"].get("config_version") == 1


async def test_activation_code_shows_in_status_until_an_admin_approves_it(tmp_path, service, conference, monkeypatch):
    box = Box(tmp_path, service, "RB-T4", monkeypatch)
    async with box:
        # The agent's status has the code first; the state machine's reason follows through
        # its event queue a moment later (a status read between the two saw the old reason).
        status = await box.until(lambda s: s["provisioning"].get("user_code")
                                 and s["provisioning"]["user_code"] in s["reason"],
                                 "an activation code, in the status reason too")
        code = status["provisioning"]["user_code"]
        assert status["state"] == "unprovisioned"
        shown = format_status(status)                              # what `roombox status` prints
        assert f"provision:  awaiting_approval · config version 0 · {service.url} · activation code {code}" in shown
        assert len(code) == 9 and code[4] == "-"
        assert status["provisioning"]["verification_uri"].startswith(service.url)
        page = build(status, datetime.datetime.now().astimezone())      # what the room screen draws
        assert (page.screen, page.activation_code, page.serial) == ("unprovisioned", code, "RB-T4")
        assert page.verification_url == status["provisioning"]["verification_uri"]
        resp = await service.admin("POST", f"/v1/admin/codes/{code}/approve", {
            "room": "Turing", "meeting_url": conference})
        assert resp.status_code == 200, resp.text
        status = await box.until(lambda s: s["state"] == "idle", "idle after approval")
        assert status["room"] == {"name": "Turing"} and status["meeting"] == conference


async def test_signed_commands_reach_leds_technician_page_and_diagnostics(tmp_path, service, conference, monkeypatch):
    box = await preregistered(tmp_path, service, monkeypatch, "RB-T5", "Hopper", conference)
    async with box:
        await box.until(lambda s: s["state"] == "idle", "idle")
        code = "ABCDE-FGHJK"
        digest = hashlib.sha256(b"ABCDEFGHJK").hexdigest()
        for body in ({"kind": "identify"},
                     {"kind": "technician_access", "args": {"code_sha256": digest, "valid_s": 600}},
                     {"kind": "collect_diagnostics"}):
            resp = await service.admin("POST", "/v1/admin/devices/RB-T5/commands", {**body, "ttl_s": 300})
            assert resp.status_code == 200, resp.text
        await box.until(lambda s: s["devices"]["leds"]["status_led"] == {"colour": "white", "pattern": "blink"},
                        "the identify blink")
        await box.until(lambda s: s["provisioning"].get("last_diagnostics"), "a diagnostics bundle")
        assert box.terminal.technician.login("10.0.0.9", code) is not None, "the admin's code opens the page"
        assert box.terminal.technician.login("10.0.0.9", "WRONG-CODE1") is None
        bundle = Path(box.terminal.status()["provisioning"]["last_diagnostics"])
        assert bundle.stat().st_mode & 0o777 == 0o600
        with tarfile.open(bundle) as tar:
            assert any(name.endswith("/status.json") for name in tar.getnames())

        async def all_reported():
            listed = (await service.admin("GET", "/v1/admin/devices/RB-T5/commands")).json()["commands"]
            return listed if all(c["status"] != "pending" for c in listed) else None
        deadline = time.monotonic() + WAIT_S
        while not (listed := await all_reported()):
            assert time.monotonic() < deadline, "command results never reached the service"
            await asyncio.sleep(0.2)
        results = {c["kind"]: (c["status"], c["result"]) for c in listed}
        assert results["identify"] == ("done", "status LED blinking white for 30 s")
        assert results["technician_access"][0] == "done"
        assert results["collect_diagnostics"][0] == "done" and "bundle written to" in results["collect_diagnostics"][1]


async def test_reboot_runs_the_reboot_command_and_a_failure_is_reported(tmp_path, service, conference, monkeypatch):
    marker = tmp_path / "rebooted"
    monkeypatch.setenv("ROOMBOX_REBOOT_COMMAND", f"touch {marker}")
    box = await preregistered(tmp_path, service, monkeypatch, "RB-T6", "Noether", conference)
    async with box:
        await box.until(lambda s: s["state"] == "idle", "idle")
        resp = await service.admin("POST", "/v1/admin/devices/RB-T6/commands", {"kind": "reboot", "ttl_s": 300})
        command_id = resp.json()["id"]
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            assert time.monotonic() < deadline, "the reboot command never ran"
            await asyncio.sleep(0.1)
        monkeypatch.setenv("ROOMBOX_REBOOT_COMMAND", "false")
        resp = await service.admin("POST", "/v1/admin/devices/RB-T6/commands", {"kind": "reboot", "ttl_s": 300})
        failing_id = resp.json()["id"]
        while True:
            listed = {c["id"]: c for c in (await service.admin("GET", "/v1/admin/devices/RB-T6/commands")).json()["commands"]}
            if listed[failing_id]["status"] != "pending":
                break
            assert time.monotonic() < deadline + WAIT_S, "no result for the failing reboot"
            await asyncio.sleep(0.2)
        assert listed[command_id]["status"] == "done" and "reboot requested" in listed[command_id]["result"]
        assert listed[failing_id]["status"] == "failed" and "false exited 1" in listed[failing_id]["result"]
