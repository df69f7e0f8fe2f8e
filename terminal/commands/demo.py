"""``roombox demo``: the box's main job on simulated hardware, end to end.

1. Self-test of every device of the profile.
2. A private meeting: a real Janus VideoRoom on loopback (its own network namespace, so it
   needs root) and a simulated remote participant publishing a test pattern and a 440 Hz tone.
3. The terminal on the ``sim`` profile with that meeting as its standing meeting; a person
   presses mute twice, then join (mock GPIO pins). Live view of the call for ~20 s: state,
   bitrates, frame rates, RTT, loss, levels. Then join again: the box leaves.
Exits 0 only if every check passed, media flowing both ways among them.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import numpy as np

from hal.profile import load_profile
from terminal.app import MeetingSettings, Terminal
from terminal.commands.selftest import print_table
from terminal.selftest import run_selftest
from terminal.state import State

IDLE_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 20.0
LEAVE_TIMEOUT_S = 15.0
STEP_S = 1.5
REFRESH_PER_S = 4
ROOM = 1234
REMOTE_TONE_HZ = 440.0
MIN_FPS = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="self-test, then a call through a loopback Janus on simulated hardware",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="sim", help="hardware profile (default: sim)")
    parser.add_argument("--call-s", type=float, default=20.0, metavar="S",
                        help="how long to stay in the call (default: 20)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logging.getLogger("roombox").setLevel(logging.WARNING if not args.verbose else logging.INFO)
    if not args.verbose:
        # The encoder probe's rejections are expected on a PC; the live view names the winner.
        logging.getLogger("roombox.media.video").setLevel(logging.ERROR)
    return asyncio.run(demo(args.profile, args.call_s))


async def demo(profile_name: str, call_s: float = 20.0) -> int:
    from rich.console import Console

    from terminal.loopback import janus as loopback

    console = Console()
    profile = load_profile(profile_name)
    console.rule(f"1. Self-test of every device (profile {profile.name})")
    checks = await run_selftest(profile)
    print_table(profile.name, checks)
    results: dict[str, bool] = {"self-test: every device passed": all(c.ok for c in checks)}
    console.rule("2. A private meeting: Janus VideoRoom on loopback and a remote participant")
    try:
        with loopback.running() as server:
            console.print(f"  Janus {server.url} (network namespace {server.netns}), room {ROOM}")
            await _meeting(server, profile, console, results, call_s)
    except loopback.LoopbackUnavailable as exc:
        console.print(f"  [red]{exc}[/]")
        results["loopback meeting started"] = False
    console.rule("4. Result")
    for text, ok in results.items():
        console.print(f"  {'[green]ok[/]  ' if ok else '[red]FAIL[/]'} {text}")
    return 0 if all(results.values()) else 1


async def _meeting(server, profile, console, results: dict[str, bool], call_s: float) -> None:
    from terminal.loopback.peer import RemotePeer, create_room

    await create_room(server.url, ROOM)
    async with RemotePeer(server.url, ROOM, "Remote (simulated)", tone_hz=REMOTE_TONE_HZ) as remote:
        console.rule("3. The terminal on simulated hardware; a person presses the buttons")
        terminal = Terminal(profile, MeetingSettings(meeting_url=server.meeting_url(ROOM),
                                                     display_name="Meeting room (roombox demo)"))
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(terminal.run(stop))
            try:
                await asyncio.wait_for(terminal.reached_idle.wait(), IDLE_TIMEOUT_S)
                results["terminal reached idle"] = True
                await _play_person(terminal, remote, console, results, call_s)
            except TimeoutError:
                results.setdefault("terminal reached idle", False)
            finally:
                stop.set()


async def _play_person(terminal: Terminal, remote, console, results: dict[str, bool], call_s: float) -> None:
    from rich.live import Live

    from terminal.loopback.peer import has_tone

    seen: dict[str, Any] = {}
    with Live(_view(terminal, remote), console=console, refresh_per_second=REFRESH_PER_S) as live:
        for text, check in (("mute pressed: mute LED lights", lambda t: t.leds.is_mute_lit and t.machine.is_muted),
                            ("mute pressed again: mute LED goes out", lambda t: not t.leds.is_mute_lit)):
            await _show_for(live, terminal, remote, STEP_S)
            await _press(terminal, "mute")
            await _show_for(live, terminal, remote, 0.5)
            results[text] = bool(check(terminal))
        await _show_for(live, terminal, remote, STEP_S)
        await _press(terminal, "join")
        joined = await _wait_for(live, terminal, remote, lambda: terminal.machine.state == State.IN_CALL,
                                 JOIN_TIMEOUT_S)
        results["join pressed: the box is in the call (status LED red)"] = (
            joined and terminal.leds.shown["colour"] == "red")
        if joined:
            await remote.watch(await remote.box_feed(JOIN_TIMEOUT_S))
            await _show_for(live, terminal, remote, call_s)
            session = terminal.session
            seen["speaker"] = session.mixer.speaker.played()[-48000:]
            seen["sink_frames"] = sum(terminal.sink.frames.values())
            seen["camera"] = session.encoder.camera
        await _press(terminal, "join")
        await _wait_for(live, terminal, remote, lambda: terminal.machine.state == State.IDLE, LEAVE_TIMEOUT_S)
        await _show_for(live, terminal, remote, 0.5)
    stamps = remote.stamps
    heard = remote.heard(2.0)
    enough = MIN_FPS * call_s          # frames: "flowing", even on a loaded 2-core machine
    counters = [s.counter for s in stamps]
    results[f"remote participant decoded {len(stamps)} of our stamped frames, in order"] = (
        len(stamps) >= enough and counters == sorted(counters))
    results["remote participant heard our microphone"] = bool(
        len(heard) and np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 100)
    results["our speaker played the remote participant's 440 Hz tone"] = (
        "speaker" in seen and has_tone(seen["speaker"], REMOTE_TONE_HZ))
    results[f"remote video reached the screen sink ({seen.get('sink_frames', 0)} frames)"] = (
        seen.get("sink_frames", 0) >= enough)
    results["join pressed again: left, camera closed, status LED green"] = (
        terminal.machine.state == State.IDLE and "camera" in seen and seen["camera"].is_closed
        and terminal.leds.shown["colour"] == "green")


async def _press(terminal: Terminal, button: str) -> None:
    pin = terminal.buttons.device(button).pin
    pin.drive_low()
    await asyncio.sleep(0.2)       # a person's press, long enough to watch the LED change
    pin.drive_high()


async def _wait_for(live, terminal: Terminal, remote, predicate, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            return False
        await _show_for(live, terminal, remote, 1 / REFRESH_PER_S)
    return True


async def _show_for(live, terminal: Terminal, remote, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        live.update(_view(terminal, remote))
        await asyncio.sleep(min(1 / REFRESH_PER_S, max(0.0, end - loop.time())))


def _view(terminal: Terminal, remote):
    from rich.table import Table

    status = terminal.status()
    table = Table(title="roombox — live status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    led = status["devices"].get("leds", {}).get("status_led", {})
    table.add_row("state", f"{status['state']} ({status['reason']})")
    table.add_row("status LED", f"{led.get('colour')} {led.get('pattern')}")
    table.add_row("microphone", "muted (mute LED lit)" if status["muted"] else "live (mute LED off)")
    call = status.get("call_session")
    if call:
        table.add_row("camera", ("open (in a call)" if call["camera_open"] else "closed")
                      + f" · H.264 encoder {call.get('encoder')}")
        table.add_row("sending", f"video {call.get('tx_video_kbps', '-')} kbit/s at {call.get('tx_fps', '-')} fps · "
                                 f"audio {call.get('tx_audio_kbps', '-')} kbit/s · "
                                 f"mic {call.get('microphone', {}).get('level_dbfs', '-')} dBFS")
        table.add_row("receiving", f"{call.get('rx_kbps', '-')} kbit/s · video shown at {call.get('rx_fps', '-')} fps")
        table.add_row("network", f"RTT {_figure(call.get('rtt_ms'), 'ms')} · loss sent {_percent(call.get('tx_loss'))}"
                                 f" · received {_percent(call.get('rx_loss'))} · rejoins {call['rejoins']}")
        for pid, who in call["participants"].items():
            table.add_row(f"  {who['display']}", f"{who['frames_shown']} frames shown · audio {who['audio_level_dbfs']} dBFS")
        processing = call.get("microphone", {}).get("processing", {})
        aec, beam = processing.get("aec", {}), processing.get("beam", {})
        table.add_row("audio pipeline", f"{' → '.join(processing.get('enabled', [])) or 'off'} · "
                                        f"echo reduction {_figure(aec.get('erle_db'), 'dB')} · "
                                        f"talker DOA {_figure(beam.get('azimuth_deg'), '°')}")
    else:
        table.add_row("camera", "closed (opens only in a call)")
    table.add_row("remote participant", f"decoded {len(remote.stamps)} of our stamped frames · "
                                        f"hears us at {_dbfs(remote.heard(0.5))} dBFS")
    table.add_row("last notice", status["notices"][-1] if status["notices"] else "-")
    table.add_row("uptime", f"{status['uptime_s']} s")
    return table


def _figure(value, unit: str) -> str:
    return "-" if value is None else f"{value} {unit}"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _dbfs(samples: np.ndarray) -> str:
    if not len(samples):
        return "-"
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return f"{20 * np.log10(rms / 32768):.0f}" if rms > 0 else "-inf"
