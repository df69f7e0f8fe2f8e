"""Buttons and LEDs through gpiozero's own MockFactory: drive the pins, check the events
and the pins' recorded states."""
from __future__ import annotations

import asyncio
import time

import pytest

from hal.buttons import Buttons
from hal.errors import DeviceUnavailable
from hal.leds import Leds
from hal.profile import ButtonPin, ButtonsProfile, LedPin, LedsProfile, RgbPins, load_profile


@pytest.fixture
def buttons():
    with Buttons(load_profile("sim").buttons) as device:
        yield device


@pytest.fixture
def leds():
    with Leds(load_profile("sim").leds) as device:
        yield device


async def collect(buttons: Buttons, count: int) -> list:
    got = []
    async with asyncio.timeout(3):
        async for event in buttons.events():
            got.append((event.button, event.action))
            if len(got) == count:
                return got


async def test_pressing_and_releasing_join_yields_events_in_order(buttons):
    listener = asyncio.create_task(collect(buttons, 4))
    await asyncio.sleep(0)
    join, mute = buttons.device("join").pin, buttons.device("mute").pin
    join.drive_low()
    assert buttons.is_pressed("join")
    join.drive_high()
    mute.drive_low()
    mute.drive_high()
    assert await listener == [("join", "pressed"), ("join", "released"),
                              ("mute", "pressed"), ("mute", "released")]
    assert buttons.status()["buttons"]["join"] == {"pin": "GPIO17", "pressed": False, "presses": 1}


async def test_holding_a_button_reports_held():
    profile = ButtonsProfile(pin_factory="mock", join=ButtonPin(pin=16, hold_s=0.5))
    with Buttons(profile) as buttons:
        listener = asyncio.create_task(collect(buttons, 2))
        await asyncio.sleep(0)
        buttons.device("join").pin.drive_low()
        assert await listener == [("join", "pressed"), ("join", "held")]
        buttons.device("join").pin.drive_high()


def test_active_high_button_presses_when_driven_high():
    profile = ButtonsProfile(pin_factory="mock", mute=ButtonPin(pin=12, pull_up=False))
    with Buttons(profile) as buttons:
        buttons.device("mute").pin.drive_high()
        assert buttons.is_pressed("mute")


def test_rgb_status_led_drives_each_colour_pin(leds):
    pins = leds.pins()
    leds.set_status("red")
    assert (pins["status.red"].state, pins["status.green"].state, pins["status.blue"].state) == (1, 0, 0)
    leds.set_status("cyan")
    assert (pins["status.red"].state, pins["status.green"].state, pins["status.blue"].state) == (0, 1, 1)
    leds.set_status("off")
    assert not any(pins[f"status.{c}"].state for c in ("red", "green", "blue"))


def test_mute_led_follows_set_mute(leds):
    pin = leds.pins()["mute"]
    leds.set_mute(True)
    assert pin.state and leds.status()["mute_led"] is True
    leds.set_mute(False)
    assert not pin.state


def test_blink_toggles_the_pin_in_the_background(leds):
    pin = leds.pins()["status.green"]
    pin.clear_states()
    leds.set_status("green", "blink", period_s=0.1)
    # gpiozero's mock pin records every change with its time; wait for a few.
    deadline = time.monotonic() + 2
    while len(pin.states) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    levels = [s.state for s in pin.states]
    assert len(levels) >= 5 and 1 in levels and 0 in levels
    # The mock stores each change's time since the previous one: half the period here.
    assert all(0.02 < s.timestamp < 0.5 for s in pin.states[2:5])


def test_single_colour_status_led_lights_for_any_colour():
    profile = LedsProfile(pin_factory="mock", status=LedPin(pin=20), mute=LedPin(pin=21))
    with Leds(profile) as leds:
        leds.set_status("amber")
        assert leds.pins()["status"].state == 1.0
        leds.set_status("off")
        assert leds.pins()["status"].state == 0


def test_unknown_colour_and_pattern_are_rejected(leds):
    with pytest.raises(ValueError, match="colour must be one of .*got 'purple'"):
        leds.set_status("purple")
    with pytest.raises(ValueError, match="pattern must be one of off, solid, blink, pulse, got 'strobe'"):
        leds.set_status("red", "strobe")


def test_active_low_leds_invert_the_pin():
    profile = LedsProfile(pin_factory="mock", active_high=False, status=RgbPins(red=2, green=3, blue=4))
    with Leds(profile) as leds:
        leds.set_status("red")
        assert leds.pins()["status.red"].state == 0 and leds.pins()["status.green"].state == 1


def test_missing_pin_library_is_named():
    with pytest.raises(DeviceUnavailable, match="gpio: pin factory 'lgpio' is not installed"):
        Buttons(ButtonsProfile(pin_factory="lgpio", join=ButtonPin(pin=17)))


def test_pin_already_in_use_is_reported():
    first = Buttons(ButtonsProfile(pin_factory="mock", join=ButtonPin(pin=9)))
    try:
        with pytest.raises(DeviceUnavailable, match="buttons: cannot use join on GPIO9"):
            Buttons(ButtonsProfile(pin_factory="mock", join=ButtonPin(pin=9)))
    finally:
        first.close()


def test_devices_close_twice_and_release_their_pins():
    profile = ButtonsProfile(pin_factory="mock", join=ButtonPin(pin=8))
    buttons = Buttons(profile)
    buttons.close()
    buttons.close()
    with Buttons(profile) as again:            # the pin is free again
        assert again.names == ["join"]
