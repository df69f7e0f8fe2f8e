"""Prometheus metrics of the terminal, read from its status aggregate at scrape time.

Served by ``roombox run`` on 127.0.0.1:9464 unless configured otherwise (``--metrics``);
names follow Prometheus conventions (base units, ``_total`` counters). No media or
meeting content: states, levels, rates and counts only.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from terminal.state import State
from terminal.web import serve_app

DEFAULT_LISTEN = "127.0.0.1:9464"
# Keys of the call session's statistics (terminal/call_stats.py) -> labels.
CALL_RATES = {  # status key -> (direction, media); received media is counted per transport
    "tx_video_kbps": ("send", "video"), "tx_audio_kbps": ("send", "audio"),
    "rx_kbps": ("receive", "all"),
}
CALL_LOSS = {"tx_loss": "send", "rx_loss": "receive"}


class TerminalCollector:
    """A prometheus_client collector over ``status()`` (a Terminal's aggregate)."""

    def __init__(self, status: Callable[[], dict[str, Any]], version: str) -> None:
        self.status = status
        self.version = version

    def collect(self) -> Iterator[Any]:
        s = self.status()
        info = InfoMetricFamily("roombox", "roombox build and hardware profile")
        info.add_metric([], {"version": self.version, "profile": str(s.get("profile"))})
        yield info
        state = GaugeMetricFamily("roombox_state", "1 for the state the terminal is in", labels=["state"])
        for name in State:
            state.add_metric([str(name)], 1.0 if s.get("state") == name else 0.0)
        yield state
        yield GaugeMetricFamily("roombox_microphone_muted", "1 while the microphone is muted",
                                value=1.0 if s.get("muted") else 0.0)
        yield GaugeMetricFamily("roombox_uptime_seconds", "seconds since the terminal started",
                                value=float(s.get("uptime_s") or 0))
        yield CounterMetricFamily("roombox_state_transitions_total", "state changes since start",
                                  value=float(s.get("transitions") or 0))
        lost = s.get("lost_devices") or {}
        up = GaugeMetricFamily("roombox_device_up", "0 while a device is missing", labels=["device"])
        for kind in ("camera", "microphone", "speaker", "buttons", "leds", "board"):
            up.add_metric([kind], 0.0 if kind in lost else 1.0)
        yield up
        yield from self._buttons(s)
        yield from self._board(s.get("board") or {})
        yield from self._call(s.get("call_session"))

    @staticmethod
    def _buttons(s: dict[str, Any]) -> Iterator[Any]:
        presses = CounterMetricFamily("roombox_button_presses_total", "button presses", labels=["button"])
        for name, button in ((s.get("devices") or {}).get("buttons") or {}).get("buttons", {}).items():
            presses.add_metric([name], float(button.get("presses", 0)))
        yield presses

    @staticmethod
    def _board(board: dict[str, Any]) -> Iterator[Any]:
        if board.get("cpu_temp_c") is not None:
            yield GaugeMetricFamily("roombox_board_cpu_temperature_celsius", "CPU temperature",
                                    value=float(board["cpu_temp_c"]))
        memory, disk = board.get("memory") or {}, board.get("disk") or {}
        if memory:
            yield GaugeMetricFamily("roombox_board_memory_available_bytes", "memory available",
                                    value=float(memory["available_bytes"]))
        if disk:
            yield GaugeMetricFamily("roombox_board_disk_free_bytes", "free disk space", value=float(disk["free_bytes"]))
        flags = board.get("throttling") or {}
        throttled = GaugeMetricFamily("roombox_board_throttling", "1 while the firmware reports the flag",
                                      labels=["flag"])
        for flag, on in flags.items():
            throttled.add_metric([flag], 1.0 if on else 0.0)
        yield throttled

    @staticmethod
    def _call(call: dict[str, Any] | None) -> Iterator[Any]:
        yield GaugeMetricFamily("roombox_call_active", "1 while a call session exists", value=1.0 if call else 0.0)
        if not call:
            return
        rates = GaugeMetricFamily("roombox_call_bitrate_bits_per_second", "media bitrate in the call",
                                  labels=["direction", "media"])
        for key, labels in CALL_RATES.items():
            if call.get(key) is not None:
                rates.add_metric(list(labels), float(call[key]) * 1000)
        yield rates
        fps = GaugeMetricFamily("roombox_call_video_frames_per_second", "video frame rate", labels=["direction"])
        for key, direction in (("tx_fps", "send"), ("rx_fps", "receive")):
            if call.get(key) is not None:
                fps.add_metric([direction], float(call[key]))
        yield fps
        if call.get("rtt_ms") is not None:
            yield GaugeMetricFamily("roombox_call_round_trip_seconds", "round-trip time to the service",
                                    value=float(call["rtt_ms"]) / 1000)
        loss = GaugeMetricFamily("roombox_call_packet_loss_ratio", "fraction of packets lost",
                                 labels=["direction"])
        for key, direction in CALL_LOSS.items():
            if call.get(key) is not None:
                loss.add_metric([direction], float(call[key]))
        yield loss
        yield GaugeMetricFamily("roombox_call_participants", "remote participants",
                                value=float(len(call.get("participants") or {})))
        yield CounterMetricFamily("roombox_call_rejoins_total", "automatic rejoins in this call",
                                  value=float(call.get("rejoins") or 0))


def parse_listen(text: str, option: str = "--metrics") -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets); raises ValueError naming the option and what was expected."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} must be HOST:PORT (e.g. {DEFAULT_LISTEN}) or 'off', got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_metrics(collector: TerminalCollector, listen: str, started: asyncio.Event | None = None) -> None:
    """Serve /metrics until cancelled."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    host, port = parse_listen(listen)
    await serve_app(app, host, port, "metrics", started)
