"""Remote video onto the room screen: the newest decoded frame of each participant,
scaled by libswscale and copied into the canvas with numpy, never per pixel in Python.

``Compositor`` implements ``terminal.screen_sink.ScreenSink``: the call session calls
``update_participant`` / ``remove_participant`` / ``set_active_speaker`` on the event loop
(each only swaps a reference under a lock), and the render thread calls ``compose``. A frame
that arrives before the previous one was shown replaces it, so the screen never shows a
frame older than the decoder's latest.
"""
from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from terminal.screen.layout import Rect, Tile, fit

# swscale's bilinear is the best quality per millisecond at 2:1 to 4:1 downscales.
INTERPOLATION = "BILINEAR"
TIMING_WINDOW = 120


@dataclass
class _Slot:
    name: str
    frame: av.VideoFrame | None = None
    seq: int = 0
    shown_seq: int = 0


@dataclass(frozen=True)
class Placed:
    """A tile as composed: whose video, where it landed, which of their frames it was."""

    participant_id: str
    name: str
    rect: Rect
    video_rect: Rect | None
    seq: int
    is_main: bool = False


class Compositor:
    """Latest frame per participant, composed into the tiles of a layout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}          # insertion order = join order
        self._self_view = _Slot("")
        self._active: str | None = None
        self._scaled: dict[str, tuple[int, Rect, np.ndarray]] = {}  # render thread only
        self._compose_s: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.frames_received = 0
        self.frames_replaced = 0      # superseded before a composition picked them up
        self.frames_composed = 0

    # ScreenSink, called on the event loop: constant time, never waits for the renderer
    # beyond the lock's few assignments.

    def update_participant(self, participant_id: str, display_name: str, frame: av.VideoFrame) -> None:
        """The newest decoded frame of ``participant_id`` (any pixel format)."""
        with self._lock:
            slot = self._slots.get(participant_id)
            if slot is None:
                slot = self._slots[participant_id] = _Slot(display_name)
            self._store(slot, frame)
            slot.name = display_name

    def remove_participant(self, participant_id: str) -> None:
        with self._lock:
            self._slots.pop(participant_id, None)
            if self._active == participant_id:
                self._active = None

    def set_active_speaker(self, participant_id: str | None) -> None:
        with self._lock:
            self._active = participant_id

    def update_self_view(self, frame: av.VideoFrame) -> None:
        """The room's own camera, shown small so people can see what the others see."""
        with self._lock:
            self._store(self._self_view, frame)

    def clear(self) -> None:
        """Forget everyone (the call ended)."""
        with self._lock:
            self._slots.clear()
            self._self_view = _Slot("")
            self._active = None

    def _store(self, slot: _Slot, frame: av.VideoFrame) -> None:
        if slot.frame is not None and slot.shown_seq != slot.seq:
            self.frames_replaced += 1
        slot.frame = frame
        slot.seq += 1
        self.frames_received += 1

    # Render thread.

    def roster(self) -> tuple[list[tuple[str, str]], str | None, bool]:
        """(participant id, name) in join order, the active speaker, whether a self-view exists."""
        with self._lock:
            return ([(pid, slot.name) for pid, slot in self._slots.items()], self._active,
                    self._self_view.frame is not None)

    def compose(self, canvas, tiles: list[Tile]) -> list[Placed]:
        """Draw each tile's newest frame, fitted and centred, onto ``canvas`` (a 32-bit
        pygame Surface); tiles without video are filled black. Returns what went where."""
        started = time.perf_counter()
        with self._lock:
            picks = []
            for tile in tiles:
                slot = self._slots.get(tile.participant_id) if tile.participant_id else self._self_view
                if slot is None:
                    continue
                picks.append((tile, slot.name, slot.frame, slot.seq))
                slot.shown_seq = slot.seq
        pixel_format = _pixel_format(canvas)
        placed = []
        scaled = []
        for key in set(self._scaled) - {tile.participant_id or "self" for tile, *_ in picks}:
            del self._scaled[key]     # someone left, or the layout no longer shows them
        for tile, name, frame, seq in picks:
            canvas.fill((0, 0, 0), tile.rect)
            video_rect = None
            if frame is not None:
                video_rect, pixels = self._scale(tile.participant_id or "self", frame, seq, tile.rect,
                                                 pixel_format)
                scaled.append((video_rect, pixels))
            placed.append(Placed(tile.participant_id, name, tile.rect, video_rect, seq, tile.is_main))
        if scaled:
            _copy_into(canvas, scaled)
        self.frames_composed += 1
        self._compose_s.append(time.perf_counter() - started)
        return placed

    def _scale(self, key: str, frame: av.VideoFrame, seq: int, rect: Rect,
               pixel_format: str) -> tuple[Rect, np.ndarray]:
        cached = self._scaled.get(key)
        video_rect = fit((frame.width, frame.height), rect)
        if cached is not None and cached[0] == seq and cached[1] == video_rect:
            return video_rect, cached[2]   # same frame, same place: the scaling is reused
        pixels = frame.reformat(width=video_rect[2], height=video_rect[3], format=pixel_format,
                                interpolation=INTERPOLATION).to_ndarray()
        if key == "self":
            # Mirrored, as every video system shows the room to itself: moving left moves left.
            pixels = np.ascontiguousarray(pixels[:, ::-1])
        self._scaled[key] = (seq, video_rect, pixels)
        return video_rect, pixels

    def status(self) -> dict[str, Any]:
        with self._lock:
            count = len(self._slots)
        timings = list(self._compose_s)
        return {"participants": count, "frames_received": self.frames_received,
                "frames_replaced": self.frames_replaced, "compositions": self.frames_composed,
                "compose_ms_median": round(statistics.median(timings) * 1000, 2) if timings else None}


def _pixel_format(canvas) -> str:
    """The FFmpeg pixel format whose bytes are the canvas's pixels, so swscale writes the
    screen's own layout and the copy into it is a plain memcpy per row."""
    if canvas.get_bytesize() != 4:
        raise ValueError(f"screen: canvas must be 32-bit, got {canvas.get_bitsize()}-bit")
    masks = tuple(canvas.get_masks()[:3])
    formats = {(0xFF0000, 0xFF00, 0xFF): "bgra", (0xFF, 0xFF00, 0xFF0000): "rgba"}
    if sys.byteorder == "big":
        formats = {(0xFF0000, 0xFF00, 0xFF): "argb", (0xFF, 0xFF00, 0xFF0000): "abgr"}
    try:
        return formats[masks]
    except KeyError:
        raise ValueError(f"screen: canvas pixel masks {[hex(m) for m in masks]} are not a "
                         "32-bit RGB layout swscale writes") from None


def _copy_into(canvas, scaled: list[tuple[Rect, np.ndarray]]) -> None:
    """Copy pixel blocks into a 32-bit surface through one locked buffer view."""
    buffer = canvas.get_buffer()
    try:
        height = canvas.get_height()
        view = np.frombuffer(buffer, np.uint8).reshape(height, canvas.get_pitch() // 4, 4)
        for (x, y, w, h), pixels in scaled:
            view[y:y + h, x:x + w] = pixels
        del view
    finally:
        del buffer   # releases the surface lock so pygame can draw on it again
