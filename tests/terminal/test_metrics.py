"""Prometheus metrics scraped over HTTP from a running terminal."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hal.profile import load_profile
from terminal.app import Terminal
from terminal.metrics import TerminalCollector, parse_listen, serve_metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            return await response.text()


async def test_metrics_follow_state_mute_and_button_presses():
    terminal = Terminal(load_profile("sim"))
    port = free_port()
    started, stop = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        server = group.create_task(serve_metrics(TerminalCollector(terminal.status, "9.9"), f"127.0.0.1:{port}", started))
        await asyncio.wait_for(terminal.reached_idle.wait(), 5)
        await asyncio.wait_for(started.wait(), 5)
        before = await scrape(port)
        pin = terminal.buttons.device("mute").pin
        pin.drive_low()
        pin.drive_high()
        async with asyncio.timeout(3):
            while not terminal.machine.is_muted:
                await asyncio.sleep(0.01)
        after = await scrape(port)
        stop.set()
        server.cancel()
    assert 'roombox_info{profile="sim",version="9.9"} 1.0' in before
    assert 'roombox_state{state="idle"} 1.0' in before and 'roombox_state{state="booting"} 0.0' in before
    assert "roombox_microphone_muted 0.0" in before and "roombox_microphone_muted 1.0" in after
    assert 'roombox_button_presses_total{button="mute"} 1.0' in after
    assert "roombox_call_active 0.0" in after


def test_call_figures_are_exported_in_base_units():
    # The figures exactly as terminal/call_stats.py names them.
    figures = {"tx_video_kbps": 1500.0, "tx_audio_kbps": 32.0, "rx_kbps": 2100.0, "tx_fps": 30.0,
               "rx_fps": 29.5, "rtt_ms": 42.0, "tx_loss": 0.02, "rx_loss": 0.05, "loss": 0.05}
    status = {"profile": "sim", "state": "in_call", "call_session": {
        **figures, "participants": {"a": {}, "b": {}}, "rejoins": 1}}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TerminalCollector(lambda: status, "1"))
    text = generate_latest(registry).decode()
    assert 'roombox_call_bitrate_bits_per_second{direction="send",media="video"} 1.5e+06' in text
    assert 'roombox_call_bitrate_bits_per_second{direction="send",media="audio"} 32000.0' in text
    assert 'roombox_call_bitrate_bits_per_second{direction="receive",media="all"} 2.1e+06' in text
    assert 'roombox_call_video_frames_per_second{direction="receive"} 29.5' in text
    assert "roombox_call_round_trip_seconds 0.042" in text
    assert 'roombox_call_packet_loss_ratio{direction="send"} 0.02' in text
    assert 'roombox_call_packet_loss_ratio{direction="receive"} 0.05' in text
    assert "roombox_call_participants 2.0" in text and "roombox_call_rejoins_total 1.0" in text


async def test_port_in_use_is_logged_and_the_terminal_goes_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await asyncio.wait_for(serve_metrics(TerminalCollector(dict, "1"), f"127.0.0.1:{port}"), 5)
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in caplog.text


def test_listen_address_errors_say_what_is_expected():
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ValueError, match="--metrics must be HOST:PORT .* or 'off', got 'localhost'"):
        parse_listen("localhost")
