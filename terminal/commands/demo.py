"""``roombox demo``: the main job on simulated hardware with embedded defaults.

Runs the self-test, starts the terminal on the ``sim`` profile, then plays a person in the
room: presses mute, mute again, then join, on gpiozero mock pins. Shows live status and
exits 0 only if every device passed, the terminal reached idle and the LEDs followed.
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from hal.profile import load_profile
from terminal.app import Terminal
from terminal.commands.selftest import print_table
from terminal.selftest import run_selftest
from terminal.state import State

IDLE_TIMEOUT_S = 10.0
STEP_S = 1.5
REFRESH_PER_S = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="self-test and run the terminal on simulated hardware",
                                   description=__doc__)
    parser.add_argument("--profile", default="sim", help="hardware profile (default: sim)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logging.getLogger("roombox").setLevel(logging.WARNING if not args.verbose else logging.INFO)
    return asyncio.run(demo(args.profile))


async def demo(profile_name: str) -> int:
    from rich.console import Console

    console = Console()
    profile = load_profile(profile_name)
    console.rule(f"1. Self-test of every device (profile {profile.name})")
    checks = await run_selftest(profile)
    print_table(profile.name, checks)
    console.rule("2. The terminal on simulated hardware; a person presses the buttons")
    terminal = Terminal(profile)
    stop = asyncio.Event()
    results: dict[str, bool] = {"self-test: every device passed": all(c.ok for c in checks)}
    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        try:
            await asyncio.wait_for(terminal.reached_idle.wait(), IDLE_TIMEOUT_S)
            results["terminal reached idle"] = True
            await _play_person(terminal, console, results)
        except TimeoutError:
            results["terminal reached idle"] = False
        finally:
            stop.set()
    console.rule("3. Result")
    for text, ok in results.items():
        console.print(f"  {'[green]ok[/]  ' if ok else '[red]FAIL[/]'} {text}")
    return 0 if all(results.values()) else 1


async def _play_person(terminal: Terminal, console, results: dict[str, bool]) -> None:
    from rich.live import Live

    steps = [("mute", "mute pressed: mute LED lights", lambda t: t.leds.is_mute_lit and t.machine.is_muted),
             ("mute", "mute pressed again: mute LED goes out", lambda t: not t.leds.is_mute_lit),
             ("join", "join pressed: the box says why it cannot join",
              lambda t: any(n.startswith("join:") for n in t.machine.notices))]
    with Live(_view(terminal), console=console, refresh_per_second=REFRESH_PER_S) as live:
        for button, text, check in steps:
            await _show_for(live, terminal, STEP_S)
            pin = terminal.buttons.device(button).pin
            pin.drive_low()
            await _show_for(live, terminal, 0.2)
            pin.drive_high()
            await _show_for(live, terminal, 0.3)
            results[text] = bool(check(terminal))
        await _show_for(live, terminal, STEP_S)
    results["status LED shows idle (green)"] = (terminal.machine.state == State.IDLE
                                                and terminal.leds.shown["colour"] == "green")


async def _show_for(live, terminal: Terminal, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        live.update(_view(terminal))
        await asyncio.sleep(min(1 / REFRESH_PER_S, max(0.0, end - loop.time())))


def _view(terminal: Terminal):
    from rich.table import Table

    status = terminal.status()
    table = Table(title="roombox — live status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    led = status["devices"].get("leds", {})
    board = status["board"]
    presses = {n: b["presses"] for n, b in status["devices"].get("buttons", {}).get("buttons", {}).items()}
    table.add_row("state", f"{status['state']} ({status['reason']})")
    table.add_row("status LED", f"{led.get('status_led', {}).get('colour')} {led.get('status_led', {}).get('pattern')}")
    table.add_row("microphone", "muted (mute LED lit)" if status["muted"] else "live (mute LED off)")
    table.add_row("button presses", ", ".join(f"{n} {c}" for n, c in presses.items()))
    table.add_row("board", f"{board.get('model')} · serial {board.get('serial')} · {board.get('cpu_temp_c')} °C")
    table.add_row("last notice", status["notices"][-1] if status["notices"] else "-")
    table.add_row("uptime", f"{status['uptime_s']} s")
    return table
