"""Diagnostics bundle: what support gets, with secrets masked, from a running terminal."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import time

from terminal.diag import MASK, mask_secrets


def roombox(*args, env=None, timeout=90):
    return subprocess.run([sys.executable, "-m", "terminal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def read_bundle(path):
    with tarfile.open(path) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_masking_covers_keys_url_passwords_and_pins():
    masked = mask_secrets({"turn": [{"url": "turn:turn.example:3478", "username": "box", "credential": "s3cret"}],
                           "meeting": "janus+https://ops:hunter2@janus.example/janus?room=7&pin=4711",
                           "admin_token": "abc", "room": "Room 7", "empty_pin": ""})
    assert masked["turn"][0]["credential"] == MASK and masked["turn"][0]["username"] == "box"
    assert masked["meeting"] == f"janus+https://ops:{MASK}@janus.example/janus?room=7&pin={MASK}"
    assert masked["admin_token"] == MASK and masked["room"] == "Room 7" and masked["empty_pin"] == ""


def test_bundle_from_a_running_terminal_holds_status_health_versions_and_no_secrets(tmp_path):
    sock = tmp_path / "control.sock"
    meeting = "janus+http://127.0.0.1:9/janus?room=1234&pin=4711"
    terminal = subprocess.Popen([sys.executable, "-m", "terminal.cli", "run", "--profile", "sim", "--meeting", meeting,
                                 "--control-socket", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = tmp_path / "support" / "bundle.tar.gz"
        result = roombox("diag", "bundle", "--out", str(out), "--control-socket", str(sock))
    finally:
        terminal.terminate()
        terminal.wait(timeout=15)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    files = read_bundle(out)
    assert set(files) == {"README.txt", "journal.jsonl", "config.json", "health.json", "status.json",
                          "calls.json", "versions.json"}
    status = json.loads(files["status.json"])
    assert status["state"] == "idle" and status["profile"] == "sim"
    health = json.loads(files["health.json"])
    assert any(f["check"] == "terminal" and f["status"] == "ok" for f in health)
    assert json.loads(files["versions.json"])["packages"]["roombox"]
    assert json.loads(files["config.json"])["hardware_profile"]["camera"]["backend"] == "sim"
    assert "4711" not in "".join(files.values())
