"""The room screen: a render thread that owns the display and draws the page the status
aggregate calls for, with live video composed in during a call.

The event loop only hands over references: ``update(status)`` stores the newest status
dict and wakes the thread; the compositor (``RoomScreen.sink``) receives decoded frames.
Drawing, scaling and presenting all happen on the render thread, so neither the event loop
nor the audio threads ever wait for the screen. Redraws: every frame interval in a call,
otherwise when the status changes and once a second for the clock.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from hal.display import Display, open_display
from hal.profile import DisplayProfile
from terminal.screen import call, screens
from terminal.screen.compositor import Compositor, Placed
from terminal.screen.draw import Painter
from terminal.screen.fonts import Fonts
from terminal.screen.model import ScreenModel, build

log = logging.getLogger("roombox.screen")

IDLE_REDRAW_S = 1.0
STATUS_POLL_S = 1.0           # call statistics and the clock change every second
THREAD_JOIN_TIMEOUT_S = 5.0
RETRY_S = 1.0
MIN_PAUSE_SHARE = 0.25
PAGES: dict[str, Callable[[Painter, ScreenModel], dict]] = {
    "booting": screens.draw_booting,
    "idle": screens.draw_idle,
    "unprovisioned": screens.draw_unprovisioned,
    "joining": screens.draw_transition,
    "leaving": screens.draw_transition,
    "degraded": screens.draw_degraded,
    "technician": screens.draw_technician,
}


def render(canvas, fonts: Fonts, model: ScreenModel,
           compositor: Compositor | None = None) -> tuple[dict, list[Placed]]:
    """Draw ``model`` on a canvas (blocking, render thread). Returns the regions drawn and,
    in a call, where each participant's video went."""
    painter = Painter(canvas, fonts)
    if model.screen == "in_call":
        return call.draw_in_call(painter, model, compositor or Compositor())
    return PAGES[model.screen](painter, model), []


class RoomScreen:
    """Async context manager running the room screen for one terminal.

    ``update(status)`` (event loop, non-blocking) hands it the newest status aggregate;
    ``sink`` is the ScreenSink the call session sends decoded video to;
    ``toggle_technician()`` opens and closes the health view (mute held 5 s).
    """

    def __init__(self, profile: DisplayProfile, *, language: str = "en", layout: str = "auto",
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.profile = profile
        self.language = language
        self.layout = layout
        self.sink = Compositor()
        self.display: Display | None = None
        self.rendered = threading.Condition()
        self.frames_rendered = 0
        self.last_regions: dict = {}
        self.last_placed: list[Placed] = []
        self.last_model: ScreenModel | None = None
        self.error: str | None = None
        self.render_thread: str | None = None     # name of the thread that drew the last frame
        self._clock = clock or (lambda: dt.datetime.now().astimezone())
        self._status: dict[str, Any] = {"state": "booting"}
        self._technician = False
        self._call_started: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, status: dict[str, Any]) -> None:
        """The newest status aggregate; the screen redraws from it soon. Never blocks."""
        self._status = status
        self._wake.set()

    async def follow(self, read_status: Callable[[], dict[str, Any]], every_s: float = STATUS_POLL_S) -> None:
        """Feed ``read_status()`` (e.g. ``Terminal.status``) to the screen every ``every_s``
        until cancelled; run it as a task of the terminal's TaskGroup. State changes can
        also call ``update()`` directly so the screen reacts at once."""
        while True:
            self.update(read_status())
            await asyncio.sleep(every_s)

    def toggle_technician(self) -> bool:
        """Open or close the health view (the terminal calls it when mute is held 5 s)."""
        self._technician = not self._technician
        self._wake.set()
        return self._technician

    async def __aenter__(self) -> "RoomScreen":
        self._thread = threading.Thread(target=self._run, name="room-screen", daemon=True)
        self._thread.start()
        # The display opens in the render thread (SDL wants one thread); wait for it here.
        await asyncio.to_thread(self._opened.wait, THREAD_JOIN_TIMEOUT_S)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, THREAD_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("screen: render thread still busy after %.1f s", THREAD_JOIN_TIMEOUT_S)

    def wait_rendered(self, count: int, timeout_s: float) -> bool:
        """Block until at least ``count`` frames were presented (tests, screenshots)."""
        with self.rendered:
            return self.rendered.wait_for(lambda: self.frames_rendered >= count, timeout_s)

    def _run(self) -> None:
        try:
            self.display = open_display(self.profile)
            fonts = Fonts()
        except Exception as exc:  # a screen that cannot open must not stop the box
            self.error = str(exc)
            log.error("screen: no room screen (%s)", exc)
            return
        finally:
            self._opened.set()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    in_call = self._frame(fonts)
                except Exception as exc:
                    # A drawing bug must not end a call or restart the box: the TV keeps
                    # its last picture, the journal gets the traceback (once per distinct
                    # error, not every second), status the reason.
                    error = f"{type(exc).__name__}: {exc}"
                    if error != self.error:
                        log.exception("screen: drawing failed; retrying every %.0f s", RETRY_S)
                    self.error = error
                    in_call = False
                    self._stop.wait(RETRY_S)
                self.display.poll()
                interval = 1.0 / self.profile.fps if in_call else IDLE_REDRAW_S
                # Pace to the frame rate, but always pause a quarter interval: a board too
                # slow for the rate shows fewer frames instead of starving audio and encode.
                spent = time.monotonic() - started
                self._wake.wait(max(interval - spent, interval * MIN_PAUSE_SHARE))
                self._wake.clear()
        finally:
            self.display.close()

    def _frame(self, fonts: Fonts) -> bool:
        status = self._status
        in_call = status.get("state") == "in_call"
        if in_call and self._call_started is None:
            self._call_started = time.monotonic()
        elif not in_call:
            self._call_started = None
            if status.get("state") not in ("joining", "leaving"):
                self.sink.clear()
        duration = time.monotonic() - self._call_started if self._call_started is not None else None
        model = build(status, self._clock(), language=self.language, layout=self.layout,
                      technician=self._technician, call_duration_s=duration)
        regions, placed = render(self.display.canvas(), fonts, model, self.sink)
        self.display.present()
        self.error = None
        with self.rendered:
            self.last_regions, self.last_placed, self.last_model = regions, placed, model
            self.render_thread = threading.current_thread().name
            self.frames_rendered += 1
            self.rendered.notify_all()
        return in_call and not self._technician

    def status(self) -> dict[str, Any]:
        return {"display": self.display.status() if self.display else {"open": False},
                "error": self.error, "frames": self.frames_rendered, "technician": self._technician,
                **self.sink.status()}
