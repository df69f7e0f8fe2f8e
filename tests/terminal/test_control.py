"""The control socket: JSON lines over a Unix socket (owner and group only), the client
function, and the ``roombox join/leave/mute/unmute/status`` commands against a running terminal."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import sys

import pytest

from terminal.app import MeetingSettings, Terminal
from terminal.control import request
from terminal.errors import ControlError
from tests.terminal.conftest import box_profile, running_terminal

pytestmark = pytest.mark.timeout(60)


async def roombox(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "terminal.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_socket_is_owner_and_group_only_and_answers_status(tmp_path):
    path = str(tmp_path / "run" / "control.sock")
    async with running_terminal(MeetingSettings(control_path=path)) as terminal:
        await _until_ready(terminal)
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
        reply = await request({"command": "status"}, path)
        assert reply["ok"] and reply["status"]["state"] == "idle"
        assert reply["status"]["profile"] == terminal.profile.name
    assert not os.path.exists(path), "the socket file is removed when the terminal stops"


async def test_bad_requests_get_errors_naming_the_problem_and_the_connection_survives(tmp_path):
    path = str(tmp_path / "control.sock")
    async with running_terminal(MeetingSettings(control_path=path)) as terminal:
        await _until_ready(terminal)
        reader, writer = await asyncio.open_unix_connection(path)
        answers = []
        for line in (b"not json\n", b"[1, 2]\n", b'{"command": "reboot"}\n',
                     b'{"command": "join", "url": 42}\n', b'{"command": "status"}\n'):
            writer.write(line)
            await writer.drain()
            async with asyncio.timeout(5):
                answers.append(json.loads(await reader.readline()))
        writer.close()
        assert [a["ok"] for a in answers] == [False, False, False, False, True]
        assert "request is not JSON" in answers[0]["error"]
        assert "must be a JSON object, got list" in answers[1]["error"]
        assert "command must be one of status, join, leave, mute, unmute, provision, technician-code, press-test, got 'reboot'" in answers[2]["error"]
        assert "url must be a meeting URL string, got 42" in answers[3]["error"]
        assert terminal.machine.state == "idle"


async def test_cli_mute_unmute_join_status_against_the_running_terminal(tmp_path):
    path = str(tmp_path / "control.sock")
    async with running_terminal(MeetingSettings(control_path=path)) as terminal:
        await _until_ready(terminal)
        code, out, _ = await roombox("mute", "--socket", path)
        assert code == 0 and "muted" in out
        assert terminal.machine.is_muted and terminal.leds.is_mute_lit
        code, out, _ = await roombox("unmute", "--socket", path)
        assert code == 0 and not terminal.machine.is_muted and not terminal.leds.is_mute_lit
        code, out, _ = await roombox("join", "--socket", path)
        assert code == 0 and "join: no meeting is configured for this room" in out
        code, out, _ = await roombox("status", "--json", "--socket", path)
        assert code == 0 and json.loads(out)["state"] == "idle"
        code, out, _ = await roombox("status", "--socket", path)
        assert code == 0 and out.startswith("state:      idle (ready)")


async def test_client_says_when_no_terminal_is_running(tmp_path):
    with pytest.raises(ControlError, match="cannot reach the terminal .* is `roombox run` running"):
        await request({"command": "status"}, str(tmp_path / "none.sock"))
    code, _, err = await roombox("status", "--socket", str(tmp_path / "none.sock"))
    assert code == 3 and "is `roombox run` running?" in err


async def _until_ready(terminal) -> None:
    async with asyncio.timeout(10):
        while terminal.control is None:       # made once the devices are open
            await asyncio.sleep(0.01)
        await terminal.control.ready.wait()


async def test_technician_code_opens_the_status_page_and_provision_needs_provisioning_on(tmp_path):
    path = str(tmp_path / "control.sock")
    async with running_terminal(MeetingSettings(control_path=path)) as terminal:
        await _until_ready(terminal)
        code, out, _ = await roombox("technician-code", "--socket", path)
        assert code == 0 and out.startswith("technician code: ")
        issued = out.split()[2]
        assert terminal.technician.login("192.0.2.7", issued) is not None, "the code opens the page"
        code, _, err = await roombox("provision", "https://prov.example.org", "--ca-sha256", "ab" * 32,
                                     "--socket", path)
        assert code == 2 and "provisioning off (roombox run --provisioning on)" in err


async def test_provision_points_an_unprovisioned_box_at_the_typed_service(tmp_path):
    path = str(tmp_path / "control.sock")
    terminal = Terminal(box_profile(), MeetingSettings(control_path=path))
    # No seed file and no DNS-SD: the box waits unprovisioned until an admin types a URL.
    terminal.enable_provisioning(state_dir=tmp_path / "state", seed_dirs=(), use_dns_sd=False)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(terminal.run(stop))
        try:
            await _until_ready(terminal)
            assert terminal.machine.state == "unprovisioned"
            code, _, err = await roombox("provision", "https://127.0.0.1:9", "--ca-sha256", "xyz",
                                         "--socket", path)
            assert code == 2 and "ca_sha256" in err and "'xyz'" in err
            code, out, _ = await roombox("provision", "https://127.0.0.1:9", "--ca-sha256", "ab" * 32,
                                         "--socket", path)
            assert code == 0 and "provisioning service set to https://127.0.0.1:9" in out
            async with asyncio.timeout(20):
                while "cannot fetch CA from https://127.0.0.1:9" not in terminal.machine.reason:
                    await asyncio.sleep(0.05)
            assert terminal.machine.state == "unprovisioned", "the typed service is tried, and why it fails is shown"
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await asyncio.wait([task])
