"""Health for field technicians: every peripheral, the speaker-to-microphone loop, the board,
the network and the software, each finding with a plain cause and a suggested fix.

When a terminal is running, its own view is used (its devices are busy and it monitors
them); otherwise the profile's devices are opened and exercised here.
"""
from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from hal.buttons import Buttons
from hal.errors import HalError
from hal.microphone import open_microphone
from hal.profile import HardwareProfile
from hal.speaker import open_speaker
from terminal.selftest import press_each_mock_button, run_selftest, summarise

CHIRP_S = 0.3
CHIRP_DBFS = -20.0
LOOP_RECORD_S = 1.0
LOOP_MIN_PEAK_RATIO = 20.0       # correlation peak over its median: the chirp was heard
NETWORK_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 3.0
LOW_DISK_BYTES = 500 * 2**20
LOW_MEMORY_BYTES = 100 * 2**20

FIXES = {
    "camera": "Check the camera's cable (CSI ribbon or USB) and that `roombox hw list` names the right device.",
    "microphone": "Check the mic array's connection; `arecord -L` lists the ALSA names the profile can use.",
    "speaker": "Check the speaker's connection and volume; `aplay -L` lists the ALSA names.",
    "buttons": "Check the GPIO library (python3-lgpio) and that the profile's pins match the wiring.",
    "leds": "Check the GPIO library (python3-lgpio) and that the profile's pins match the wiring.",
    "board": "Use the board's official power supply and make sure the case lets air through.",
}


@dataclass
class Finding:
    section: str
    check: str
    status: str                 # "ok", "warn", "fail" or "skip"
    detail: str = ""
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"section": self.section, "check": self.check, "status": self.status,
                "detail": self.detail, "fix": self.fix, **self.figures}


async def peripherals(profile: HardwareProfile) -> list[Finding]:
    """Exercise every device (self-test), then play a chirp and record it back."""
    findings = []
    for check in await run_selftest(profile):
        findings.append(Finding("peripherals", check.device, "ok" if check.ok else "fail",
                                check.reason or summarise(check), "" if check.ok else FIXES[check.device],
                                {"backend": check.backend, **check.figures}))
    findings.append(await speaker_loop(profile))
    return findings


async def speaker_loop(profile: HardwareProfile) -> Finding:
    """Play a chirp while recording: reports the playback-to-capture delay (what the echo
    canceller must bridge) and how loud the speaker is at the microphones."""
    name = "speaker loop"
    try:
        mic = await asyncio.to_thread(open_microphone, profile.microphone)
    except HalError as exc:
        return Finding("peripherals", name, "skip", f"microphone unavailable ({exc})")
    try:
        speaker = await asyncio.to_thread(open_speaker, profile.speaker)
    except HalError as exc:
        await asyncio.to_thread(mic.close)
        return Finding("peripherals", name, "skip", f"speaker unavailable ({exc})")
    rate = speaker.sample_rate
    t = np.arange(int(CHIRP_S * rate)) / rate
    sweep = np.sin(2 * np.pi * (200 * t + (6000 - 200) / (2 * CHIRP_S) * t ** 2)) * np.hanning(len(t))
    chirp = (10 ** (CHIRP_DBFS / 20) * 32767 * sweep).astype(np.int16)
    periods: list[np.ndarray] = []
    # When the first sample was captured: each period's arrival time minus the audio before
    # it; the earliest such estimate has the least scheduling delay in it.
    first_at: list[float] = []

    async def record() -> None:
        period_s = mic.period_frames / mic.sample_rate
        async for period in mic.periods():
            periods.append(period)
            estimate = time.monotonic() - len(periods) * period_s
            first_at[:] = [min(first_at + [estimate])]
            if len(periods) * mic.period_frames >= LOOP_RECORD_S * mic.sample_rate:
                return

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(record())
            await asyncio.sleep(0.1)
            played_at = time.monotonic()
            await speaker.play(chirp)
    finally:
        await asyncio.to_thread(mic.close)
        await asyncio.to_thread(speaker.close)
    heard = np.concatenate(periods).astype(np.float64).mean(axis=1)
    reference = chirp.astype(np.float64)
    if mic.sample_rate != rate:
        reference = np.interp(np.arange(0, len(reference), rate / mic.sample_rate), np.arange(len(reference)), reference)
    corr = np.abs(np.correlate(heard, reference, mode="valid"))
    peak = int(np.argmax(corr))
    ratio = float(corr[peak] / (np.median(corr) + 1e-9))
    delay_ms = (first_at[0] + peak / mic.sample_rate - played_at) * 1000
    # The echo's gain is the projection of what was heard onto the chirp: talk in the room
    # is uncorrelated with the chirp and drops out.
    segment = heard[peak: peak + len(reference)]
    level_db = 20 * np.log10(abs(float(segment @ reference)) / float(reference @ reference) + 1e-12)
    figures = {"delay_ms": round(delay_ms, 1), "echo_level_db": round(float(level_db), 1),
               "peak_ratio": round(ratio, 1)}
    if ratio < LOOP_MIN_PEAK_RATIO:
        return Finding("peripherals", name, "fail", "the microphones did not hear the speaker's test chirp",
                       "Check the speaker is connected, powered and not muted, and that it faces the room.", figures)
    return Finding("peripherals", name, "ok",
                   f"chirp heard after {delay_ms:.0f} ms at {level_db:.0f} dB relative to what was played", "", figures)


PRESS_POLL_S = 0.2
PRESS_FIX = ("Check that button's wiring to its GPIO pin and the pin number in the profile "
             "(`roombox hw list` shows them); a button that never reads pressed may need the "
             "other pull direction (pull_up).")


def _press_finding(expected: list[str], seen: set[str], seconds: float) -> Finding:
    missing = [n for n in expected if n not in seen]
    figures = {"press_test": {n: n in seen for n in expected}}
    if missing:
        return Finding("peripherals", "button press test", "fail",
                       f"no press from {', '.join(missing)} within {seconds:.0f} s", PRESS_FIX, figures)
    return Finding("peripherals", "button press test", "ok", f"every button answered: {', '.join(expected)}",
                   "", figures)


async def press_test_running(control_path: str | None, seconds: float, say: Callable[[str], None]) -> Finding:
    """Ask the running terminal to count presses without acting on them, and watch its
    counters while a person presses each button."""
    from terminal.control import request
    reply = await request({"command": "press-test", "seconds": seconds}, control_path)
    if not reply.get("ok"):
        return Finding("peripherals", "button press test", "fail", reply.get("error", "refused"), PRESS_FIX)
    baseline: dict[str, int] = reply["presses"]
    names, seen = list(baseline), set()
    say(f"Press each button once now: {', '.join(names)} (within {seconds:.0f} s)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(seen) < len(names):
        status = (await request({"command": "status"}, control_path)).get("status") or {}
        counts = ((status.get("devices") or {}).get("buttons") or {}).get("buttons") or {}
        for name in names:
            if name not in seen and counts.get(name, {}).get("presses", 0) > baseline[name]:
                seen.add(name)
                say(f"  {name}: pressed")
        await asyncio.sleep(PRESS_POLL_S)
    return _press_finding(names, seen, seconds)


async def press_test_local(profile: HardwareProfile, seconds: float, say: Callable[[str], None]) -> Finding:
    """No terminal running: open the buttons here. Mock pins are pressed by the test itself."""
    try:
        buttons = await asyncio.to_thread(Buttons, profile.buttons)
    except HalError as exc:
        return Finding("peripherals", "button press test", "fail", str(exc), FIXES["buttons"])
    try:
        names = list(buttons.names)
        if profile.buttons.pin_factory == "mock":
            result = await press_each_mock_button(buttons)
            return _press_finding(names, {n for n, ok in result.items() if ok}, seconds)
        say(f"Press each button once now: {', '.join(names)} (within {seconds:.0f} s)")
        seen: set[str] = set()
        try:
            async with asyncio.timeout(seconds):
                async for event in buttons.events():
                    if event.action == "pressed" and event.button not in seen:
                        seen.add(event.button)
                        say(f"  {event.button}: pressed")
                        if len(seen) == len(names):
                            break
        except TimeoutError:
            pass
        return _press_finding(names, seen, seconds)
    finally:
        await asyncio.to_thread(buttons.close)


def board(info: dict[str, Any]) -> list[Finding]:
    findings = []
    temp = info.get("cpu_temp_c")
    flags = info.get("throttling") or {}
    now = [k for k, v in flags.items() if v and not k.endswith("_occurred")]
    earlier = [k[: -len("_occurred")] for k, v in flags.items() if v and k.endswith("_occurred")]
    if now:
        findings.append(Finding("board", "power and throttling", "fail", f"{', '.join(now)} now", FIXES["board"]))
    elif earlier:
        findings.append(Finding("board", "power and throttling", "warn", f"{', '.join(earlier)} since boot", FIXES["board"]))
    else:
        findings.append(Finding("board", "power and throttling", "ok" if flags else "skip",
                                "no under-voltage or throttling" if flags else "this board does not report it"))
    if temp is None:
        findings.append(Finding("board", "temperature", "skip", "no thermal sensor"))
    else:
        findings.append(Finding("board", "temperature", "fail" if temp >= 80 else "warn" if temp >= 70 else "ok",
                                f"CPU at {temp} °C", FIXES["board"] if temp >= 70 else "", {"cpu_temp_c": temp}))
    memory, disk = info.get("memory") or {}, info.get("disk") or {}
    available = memory.get("available_bytes", 0)
    findings.append(Finding("board", "memory", "fail" if available < LOW_MEMORY_BYTES else "ok",
                            f"{available / 2**20:.0f} MiB available of {memory.get('total_bytes', 0) / 2**20:.0f} MiB",
                            "Restart the box; if it recurs, collect `roombox diag bundle` for support."
                            if available < LOW_MEMORY_BYTES else ""))
    free = disk.get("free_bytes", 0)
    findings.append(Finding("board", "disk", "fail" if free < LOW_DISK_BYTES else "ok",
                            f"{free / 2**30:.1f} GiB free", "Free space: `journalctl --vacuum-size=100M`."
                            if free < LOW_DISK_BYTES else ""))
    findings.append(clock_sync())
    return findings


def clock_sync() -> Finding:
    """TLS and calendar times need a synchronised clock."""
    if shutil.which("timedatectl"):
        try:
            out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                                 text=True, timeout=COMMAND_TIMEOUT_S).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            out = ""
        if out == "yes":
            return Finding("board", "clock", "ok", "synchronised by NTP")
        if out == "no":
            return Finding("board", "clock", "warn", "not synchronised",
                           "Check that the network allows NTP (UDP 123) to the configured time servers.")
    if os.path.exists("/run/systemd/timesync/synchronized"):
        return Finding("board", "clock", "ok", "synchronised by systemd-timesyncd")
    return Finding("board", "clock", "warn", "synchronisation state unknown (no timedatectl answer)",
                   "Run `timedatectl`; enable systemd-timesyncd or chrony.")


async def network(urls: dict[str, str]) -> list[Finding]:
    """DNS and a TCP connection (with its round-trip time) for every configured service; a
    STUN binding over UDP for turn: servers (media relays are useless if UDP is blocked)."""
    if not urls:
        return [Finding("network", "services", "skip", "no meeting or provisioning service configured")]
    return list(await asyncio.gather(*(
        stun_endpoint(name, url) if url.startswith(("turn:", "stun:")) else endpoint(name, url)
        for name, url in urls.items())))


STUN_MAGIC = 0x2112A442
STUN_TRIES = 3


def _turn_host_port(url: str) -> tuple[str, int]:
    """turn:HOST[:PORT][?transport=udp] (RFC 7065) -> (host, port)."""
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port.isdigit() else 3478


class _StunClient(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self.transaction = transaction
        self.answered: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # A Binding success (0x0101) or error (0x0111) for our transaction: the server is there.
        if len(data) >= 20 and data[8:20] == self.transaction and not self.answered.done():
            self.answered.set_result(int.from_bytes(data[0:2], "big"))


async def stun_endpoint(name: str, url: str) -> Finding:
    """Send a STUN Binding request (RFC 8489) over UDP to a TURN server; TURN servers answer
    it without credentials, so this measures UDP reachability and round-trip time."""
    host, port = _turn_host_port(url)
    loop = asyncio.get_running_loop()
    transaction = os.urandom(12)
    request = (0x0001).to_bytes(2, "big") + (0).to_bytes(2, "big") + STUN_MAGIC.to_bytes(4, "big") + transaction
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _StunClient(transaction), remote_addr=(host, port))
    except (OSError, TimeoutError) as exc:
        return Finding("network", name, "fail", f"cannot reach {host}:{port} over UDP ({exc or 'timed out'})",
                       "Check the box's DNS and routing to the TURN server.")
    try:
        for _ in range(STUN_TRIES):
            started = time.monotonic()     # the round trip of the try that was answered
            transport.sendto(request)
            try:
                async with asyncio.timeout(NETWORK_TIMEOUT_S / STUN_TRIES):
                    await asyncio.shield(protocol.answered)
                break
            except TimeoutError:
                continue
    finally:
        transport.close()
    if not protocol.answered.done():
        return Finding("network", name, "fail", f"no STUN answer from {host}:{port} over UDP",
                       "Ask IT to allow UDP to the TURN server's port (3478 by default); calls then "
                       "fall back to TCP/TLS relays, which cost latency.")
    rtt_ms = (time.monotonic() - started) * 1000
    return Finding("network", name, "ok", f"{host}:{port} answers STUN over UDP in {rtt_ms:.0f} ms", "",
                   {"rtt_ms": round(rtt_ms, 1)})


async def endpoint(name: str, url: str) -> Finding:
    parts = urlsplit(url)
    host = parts.hostname or ""
    scheme = parts.scheme.split("+")[-1]
    port = parts.port or {"https": 443, "wss": 443, "http": 80, "ws": 80, "turn": 3478, "stun": 3478}.get(scheme, 443)
    loop = asyncio.get_running_loop()
    try:
        started = time.monotonic()
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        dns_ms = (time.monotonic() - started) * 1000
    except (OSError, TimeoutError) as exc:
        return Finding("network", name, "fail", f"cannot resolve {host!r} ({exc or 'timed out'})",
                       "Check the box's DNS server (DHCP) and that the name is right in the configuration.")
    try:
        started = time.monotonic()
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host, port)
        rtt_ms = (time.monotonic() - started) * 1000
        writer.close()
    except (OSError, TimeoutError) as exc:
        return Finding("network", name, "fail", f"{host}:{port} unreachable ({exc or 'timed out'})",
                       "Check the firewall allows this box to reach that port, and that the service runs.",
                       {"dns_ms": round(dns_ms, 1)})
    return Finding("network", name, "ok", f"{host}:{port} reachable in {rtt_ms:.0f} ms",
                   "", {"dns_ms": round(dns_ms, 1), "connect_ms": round(rtt_ms, 1),
                        "address": addresses[0][4][0]})


def software(version: str, running: dict[str, Any] | None) -> list[Finding]:
    findings = [Finding("software", "version", "ok", f"roombox {version}, Python {platform.python_version()}",
                        figures={"version": version})]
    if running is None:
        findings.append(Finding("software", "terminal", "warn", "not running",
                                "Start it: `systemctl start roombox`; see why it stopped: `journalctl -u roombox`."))
    else:
        state, reason = running.get("state"), running.get("reason", "")
        status = "fail" if state == "degraded" else "ok"
        findings.append(Finding("software", "terminal", status, f"{state} ({reason}), up {running.get('uptime_s')} s",
                                "See the failing device above; the terminal retries by itself." if status == "fail" else "",
                                {"state": state}))
        for kind, why in (running.get("lost_devices") or {}).items():
            findings.append(Finding("peripherals", kind, "fail", why, FIXES.get(kind, "")))
        findings += configuration(running)
    restarts = systemd_restarts()
    if restarts is not None:
        findings.append(Finding("software", "restarts", "warn" if restarts else "ok",
                                f"{restarts} restart(s) since the service started",
                                "Collect `roombox diag bundle` for support." if restarts else "",
                                {"restarts": restarts}))
    return findings


def configuration(running: dict[str, Any]) -> list[Finding]:
    """Which configuration runs (local or provisioned, its version) and the last errors."""
    prov = running.get("provisioning")
    if prov is None:
        detail = "local (--meeting / /etc/roombox/roombox.env), no provisioning service"
        findings = [Finding("software", "configuration", "ok", detail, figures={"config_version": None})]
    else:
        version = prov.get("config_version") or 0
        rollback = prov.get("last_rollback")
        status = "warn" if rollback or not version else "ok"
        detail = f"provisioned, version {version}" if version else f"not provisioned yet ({running.get('reason')})"
        if rollback:
            detail += f"; version {rollback['version']} was rolled back: {rollback['reason']}"
        findings = [Finding("software", "configuration", status, detail,
                            "Check the configuration published for this box (`roombox admin devices`)."
                            if status == "warn" else "", {"config_version": version})]
    errors = [e for e in ((prov or {}).get("problem"), (running.get("call_session") or {}).get("last_error")) if e]
    errors += [n for n in running.get("notices") or [] if "fail" in n or "ended (" in n]
    findings.append(Finding("software", "last errors", "warn" if errors else "ok",
                            "; ".join(errors[-3:]) if errors else "none",
                            "See `journalctl -u roombox` around these times." if errors else ""))
    return findings


def systemd_restarts(unit: str = "roombox.service") -> int | None:
    if not os.path.isdir("/run/systemd/system") or not shutil.which("systemctl"):
        return None
    try:
        out = subprocess.run(["systemctl", "show", unit, "-p", "NRestarts", "--value"], capture_output=True,
                             text=True, timeout=COMMAND_TIMEOUT_S).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return int(out) if out.isdigit() else None


def overall(findings: list[Finding]) -> bool:
    return not any(f.status == "fail" for f in findings)
