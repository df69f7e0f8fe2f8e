"""Self-test: exercise every device of a profile and report pass/fail with measured figures.

Camera: captures for a second, measures fps from frame timestamps and checks that frames
change. Microphone: records a second; level, peak and clipping per channel, dead channels.
Speaker: plays a 1 kHz tone. Buttons: reads them (and, on mock pins, presses each one).
LEDs: drives every colour and reads the pins back. Board: identity, temperature, flags.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import numpy as np

from hal.board import open_board
from hal.buttons import Buttons
from hal.camera import open_camera
from hal.errors import HalError
from hal.leds import Leds
from hal.microphone import open_microphone
from hal.profile import HardwareProfile
from hal.speaker import open_speaker

CAPTURE_S = 1.0
TONE_S = 0.5
TONE_HZ = 1000
TONE_DBFS = -20.0
FPS_TOLERANCE = 0.8          # a camera delivering under 80 % of its configured rate fails
DEAD_CHANNEL_DBFS = -85.0    # below a MEMS mic's self-noise: the channel is not connected
CLIPPING_MAX_RATIO = 0.01
HOT_CPU_C = 80.0             # the Pi firmware starts soft throttling at 80 °C
BUTTON_EVENT_TIMEOUT_S = 1.0
DEVICE_TIMEOUT_S = 15.0


@dataclass
class Check:
    device: str
    backend: str = "-"
    ok: bool = False
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "backend": self.backend, "ok": self.ok,
                "reason": self.reason, **self.figures}


async def run_selftest(profile: HardwareProfile) -> list[Check]:
    """Run every check; camera and microphone capture at the same time to save a second."""
    checks = await asyncio.gather(
        _guard("camera", check_camera, profile),
        _guard("microphone", check_microphone, profile),
        _guard("speaker", check_speaker, profile),
    )
    for device, check in (("buttons", check_buttons), ("leds", check_leds), ("board", check_board)):
        checks.append(await _guard(device, check, profile))
    return list(checks)


async def _guard(device: str, check: Callable[[HardwareProfile, Check], Awaitable[None]],
                 profile: HardwareProfile) -> Check:
    """A device error becomes a failed check with the device's own message."""
    result = Check(device, backend=_configured_backend(profile, device))
    try:
        async with asyncio.timeout(DEVICE_TIMEOUT_S):
            await check(profile, result)
    except HalError as exc:
        result.ok, result.reason = False, str(exc)
    except TimeoutError:
        result.ok, result.reason = False, f"{device}: no answer within {DEVICE_TIMEOUT_S:.0f} s"
    return result


def _configured_backend(profile: HardwareProfile, device: str) -> str:
    section = getattr(profile, device)
    return getattr(section, "backend", None) or getattr(section, "pin_factory", "-")


async def check_camera(profile: HardwareProfile, result: Check) -> None:
    camera = await asyncio.to_thread(open_camera, profile.camera)
    result.backend = camera.backend
    try:
        frames = []
        started = time.monotonic()
        async for frame in camera.frames():
            frames.append(frame)
            if time.monotonic() - started >= CAPTURE_S and len(frames) >= 3:
                break
    finally:
        await asyncio.to_thread(camera.close)
    span_s = float((frames[-1].pts - frames[0].pts) * frames[0].time_base)
    fps = (len(frames) - 1) / span_s if span_s > 0 else 0.0
    lumas = [f.to_ndarray(format="gray").astype(np.int16) for f in (frames[0], frames[-1])]
    change = float(np.abs(lumas[1] - lumas[0]).mean())
    result.figures = {"fps": round(fps, 1), "frames": len(frames), "size": f"{frames[0].width}x{frames[0].height}",
                      "mean_change": round(change, 2)}
    if fps < FPS_TOLERANCE * profile.camera.fps:
        result.reason = f"camera: {fps:.1f} fps measured, {profile.camera.fps} configured"
    elif change == 0:
        result.reason = "camera: frames do not change (frozen sensor or pipeline)"
    else:
        result.ok = True


async def check_microphone(profile: HardwareProfile, result: Check) -> None:
    mic = await asyncio.to_thread(open_microphone, profile.microphone)
    result.backend = mic.backend
    try:
        periods = []
        async for period in mic.periods():
            periods.append(period)
            if len(periods) * mic.period_frames >= CAPTURE_S * mic.sample_rate:
                break
    finally:
        await asyncio.to_thread(mic.close)
    samples = np.concatenate(periods).astype(np.float64)
    rms = np.sqrt(np.mean(samples ** 2, axis=0))
    levels = [round(float(20 * np.log10(r / 32768)), 1) if r > 0 else None for r in rms]
    peaks = np.max(np.abs(samples), axis=0)
    clipping = np.mean(np.abs(samples) >= 32767, axis=0)
    dead = [ch for ch, level in enumerate(levels) if level is None or level < DEAD_CHANNEL_DBFS]
    clipped = [ch for ch, ratio in enumerate(clipping) if ratio > CLIPPING_MAX_RATIO]
    result.figures = {"channels": mic.channels, "sample_rate": mic.sample_rate, "level_dbfs": levels,
                      "peak_dbfs": [round(float(20 * np.log10(max(p, 1) / 32768)), 1) for p in peaks],
                      "clipping_ratio": [round(float(c), 4) for c in clipping], "dead_channels": dead,
                      "overruns": mic.overruns}
    if dead:
        result.reason = f"microphone: dead channel(s) {dead} (level below {DEAD_CHANNEL_DBFS:.0f} dBFS)"
    elif clipped:
        result.reason = f"microphone: channel(s) {clipped} clip (more than {CLIPPING_MAX_RATIO:.0%} of samples at full scale)"
    else:
        result.ok = True


async def check_speaker(profile: HardwareProfile, result: Check) -> None:
    speaker = await asyncio.to_thread(open_speaker, profile.speaker)
    result.backend = speaker.backend
    rate = speaker.sample_rate
    t = np.arange(int(TONE_S * rate)) / rate
    tone = (10 ** (TONE_DBFS / 20) * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    started = time.monotonic()
    try:
        await speaker.play(tone)
    finally:
        await asyncio.to_thread(speaker.close)
    result.figures = {"tone_hz": TONE_HZ, "played_s": round(speaker.frames_written / rate, 2),
                      "level_dbfs": speaker.status().get("level_dbfs"), "underruns": speaker.underruns,
                      "took_s": round(time.monotonic() - started, 2)}
    result.ok = speaker.frames_written == len(tone)
    if not result.ok:
        result.reason = f"speaker: wrote {speaker.frames_written} of {len(tone)} frames"


async def check_buttons(profile: HardwareProfile, result: Check) -> None:
    buttons = await asyncio.to_thread(Buttons, profile.buttons)
    result.backend = f"gpiozero/{profile.buttons.pin_factory}"
    try:
        states = {name: buttons.is_pressed(name) for name in buttons.names}
        result.figures = {"buttons": {n: ("pressed" if p else "released") for n, p in states.items()}}
        stuck = [name for name, pressed in states.items() if pressed]
        if stuck:
            result.reason = (f"buttons: {', '.join(stuck)} read(s) pressed while nobody presses: "
                             "stuck, or wired to the wrong pin / pull direction")
            return
        if profile.buttons.pin_factory == "mock":
            seen = await press_each_mock_button(buttons)
            result.figures["press_test"] = seen
            missing = [n for n, ok in seen.items() if not ok]
            if missing:
                result.reason = f"buttons: no event from {', '.join(missing)} when pressed"
                return
        result.ok = True
    finally:
        await asyncio.to_thread(buttons.close)


async def press_each_mock_button(buttons: Buttons) -> dict[str, bool]:
    """Drive each mock pin to its pressed level and back; report which presses arrived."""
    pressed: set[str] = set()
    all_seen = asyncio.Event()

    async def collect() -> None:
        async for event in buttons.events():
            if event.action == "pressed":
                pressed.add(event.button)
                if pressed >= set(buttons.names):
                    all_seen.set()

    async with asyncio.TaskGroup() as group:
        collector = group.create_task(collect())
        await asyncio.sleep(0)  # let the collector subscribe before the first press
        for name in buttons.names:
            pin = buttons.device(name).pin
            if buttons.profile.named()[name].pull_up:
                pin.drive_low(), pin.drive_high()
            else:
                pin.drive_high(), pin.drive_low()
        try:
            await asyncio.wait_for(all_seen.wait(), BUTTON_EVENT_TIMEOUT_S)
        except TimeoutError:
            pass
        collector.cancel()
    return {name: name in pressed for name in buttons.names}


async def check_leds(profile: HardwareProfile, result: Check) -> None:
    leds = await asyncio.to_thread(Leds, profile.leds)
    result.backend = f"gpiozero/{profile.leds.pin_factory}"
    try:
        mismatches = []
        steps = ["red", "green", "blue"] if leds.is_rgb else ["white"]
        for colour in steps:
            leds.set_status(colour)
            mismatches += _compare_pins(leds, colour, mute=False)
        leds.set_status("off")
        if leds.mute_led is not None:
            leds.set_mute(True)
            mismatches += _compare_pins(leds, "off", mute=True)
            leds.set_mute(False)
        result.figures = {"cycled": steps + (["mute"] if leds.mute_led is not None else []),
                          "pins": leds.status()["pins"]}
        if mismatches:
            result.reason = f"leds: pins did not follow: {'; '.join(mismatches)}"
        else:
            result.ok = True
    finally:
        await asyncio.to_thread(leds.close)


def _compare_pins(leds: Leds, colour: str, mute: bool) -> list[str]:
    expected = {"status.red": colour == "red", "status.green": colour == "green",
                "status.blue": colour == "blue", "status": colour != "off", "mute": mute}
    wrong = []
    for role, pin in leds.pins().items():
        level = bool(pin.state) == leds.profile.active_high
        if level != expected[role]:
            wrong.append(f"{role} ({pin}) is {'on' if level else 'off'} showing {colour}{' + mute' if mute else ''}")
    return wrong


async def check_board(profile: HardwareProfile, result: Check) -> None:
    board = await asyncio.to_thread(open_board, profile.board)
    result.backend = board.backend
    try:
        info = await asyncio.to_thread(board.info)
    finally:
        board.close()
    result.figures = {k: info[k] for k in ("model", "serial", "cpu_temp_c", "uptime_s")}
    result.figures["throttling"] = info["throttling"]
    flags = [name for name, on in (info["throttling"] or {}).items() if on and not name.endswith("_occurred")]
    if flags:
        result.reason = f"board: {', '.join(flags)} now (check the power supply and cooling)"
    elif info["cpu_temp_c"] is not None and info["cpu_temp_c"] >= HOT_CPU_C:
        result.reason = f"board: CPU at {info['cpu_temp_c']} °C (at or above {HOT_CPU_C:.0f} °C; check cooling)"
    else:
        result.ok = True


def summarise(check: Check) -> str:
    """The figures a technician reads first, one short line per device."""
    f = check.figures
    if not f:
        return ""
    if check.device == "camera":
        return f"{f['size']} at {f['fps']} fps, change {f['mean_change']}"
    if check.device == "microphone":
        levels = ", ".join("dead" if v is None else f"{v:.0f}" for v in f["level_dbfs"])
        return f"{f['channels']} ch @ {f['sample_rate']} Hz, dBFS: {levels}"
    if check.device == "speaker":
        return f"{f['tone_hz']} Hz tone {f['played_s']} s at {f['level_dbfs']} dBFS"
    if check.device == "buttons":
        return ", ".join(f"{n} {s}" for n, s in f["buttons"].items())
    if check.device == "leds":
        return "cycled " + ", ".join(f["cycled"])
    if check.device == "board":
        temp = "?" if f["cpu_temp_c"] is None else f"{f['cpu_temp_c']} °C"
        return f"{f['model']}, serial {f['serial']}, {temp}"
    return ""
