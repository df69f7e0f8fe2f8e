"""The terminal process and its state machine on simulated hardware."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from hal.profile import load_profile
from terminal.app import LED_PATTERNS, Terminal
from terminal.state import Event, State, StateMachine


def test_state_machine_goes_idle_then_degraded_and_back():
    machine = StateMachine()
    machine.handle(Event("devices_opened", {"failures": {}}))
    machine.handle(Event("device_lost", {"kind": "camera", "reason": "unplugged"}))
    assert (machine.state, machine.reason) == (State.DEGRADED, "camera: unplugged")
    machine.handle(Event("device_restored", {"kind": "camera"}))
    assert [(t.before, t.after) for t in machine.history] == [
        (State.BOOTING, State.IDLE), (State.IDLE, State.DEGRADED), (State.DEGRADED, State.IDLE)]


def test_failed_device_at_start_means_degraded_with_its_reason():
    machine = StateMachine()
    machine.handle(Event("devices_opened", {"failures": {"leds": "gpio: pin factory 'lgpio' is not installed"}}))
    assert machine.state == State.DEGRADED
    assert machine.reason == "leds: gpio: pin factory 'lgpio' is not installed"


def test_unknown_event_changes_nothing(caplog):
    machine = StateMachine()
    machine.handle(Event("teleport_requested"))
    assert machine.state == State.BOOTING and "ignoring unknown event 'teleport_requested'" in caplog.text


async def press(terminal: Terminal, button: str) -> None:
    pin = terminal.buttons.device(button).pin
    pin.drive_low()
    pin.drive_high()


async def until(predicate, timeout_s=3.0):
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_terminal_reaches_idle_shows_green_and_mute_button_drives_mute_led():
    terminal = Terminal(load_profile("sim"))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        await asyncio.wait_for(terminal.reached_idle.wait(), 5)
        status_pins = terminal.leds.pins()
        assert terminal.leds.shown == {"colour": "green", "pattern": "solid"} == dict(
            zip(("colour", "pattern"), LED_PATTERNS[State.IDLE]))
        assert status_pins["status.green"].state == 1 and status_pins["status.red"].state == 0
        await press(terminal, "mute")
        await until(lambda: terminal.machine.is_muted)
        assert status_pins["mute"].state
        await press(terminal, "mute")
        await until(lambda: not terminal.machine.is_muted)
        assert not status_pins["mute"].state
        await press(terminal, "join")
        await until(lambda: terminal.machine.notices)
        assert terminal.status()["notices"] == ["join: no meeting is configured for this room"]
        stop.set()
    assert terminal.leds.is_closed and terminal.buttons.is_closed


async def test_terminal_with_broken_gpio_runs_degraded_and_says_why():
    profile = load_profile("sim")
    profile = dataclasses.replace(profile, buttons=dataclasses.replace(profile.buttons, pin_factory="lgpio"))
    terminal = Terminal(profile)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        await until(lambda: terminal.machine.state != State.BOOTING)
        status = terminal.status()
        shown = dict(terminal.leds.shown)
        stop.set()
    assert status["state"] == "degraded"
    assert status["reason"].startswith("buttons: gpio: pin factory 'lgpio' is not installed")
    assert shown == {"colour": "amber", "pattern": "pulse"}
    assert terminal.leds.shown["colour"] == "off"  # switched off at exit
