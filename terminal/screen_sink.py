"""Where the call session hands remote video: a frame sink the room screen implements.

The call session calls these on the event loop, for every decoded frame of every remote
participant; implementations must return quickly (keep the newest frame per participant and
compose on their own thread or timer). ``frame`` is an ``av.VideoFrame`` (yuv420p as
decoded, pts in 1/90000).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FrameSink(Protocol):
    """The room screen's side of remote video (issue 8 renders it to HDMI)."""

    def update_participant(self, participant_id: str, display_name: str, frame: Any) -> None:
        """The newest decoded frame of ``participant_id`` (who appears on first call)."""

    def remove_participant(self, participant_id: str) -> None:
        """That participant left the call or stopped sending video."""

    def set_active_speaker(self, participant_id: str | None) -> None:
        """Who is talking now (None: nobody), for the active-speaker layout."""


class RecordingSink:
    """A FrameSink that remembers what it was given, for tests, the demo and benchmarks:
    frame counts, the last frame and the display name per participant, and the order of
    joins, leaves and active-speaker changes in ``log``."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.last_frame: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self.active_speaker: str | None = None
        self.log: list[tuple[str, str | None]] = []

    def update_participant(self, participant_id: str, display_name: str, frame: Any) -> None:
        if participant_id not in self.frames:
            self.log.append(("joined", participant_id))
        self.frames[participant_id] = self.frames.get(participant_id, 0) + 1
        self.last_frame[participant_id] = frame
        self.names[participant_id] = display_name

    def remove_participant(self, participant_id: str) -> None:
        self.frames.pop(participant_id, None)
        self.last_frame.pop(participant_id, None)
        self.names.pop(participant_id, None)
        self.log.append(("left", participant_id))

    def set_active_speaker(self, participant_id: str | None) -> None:
        if participant_id != self.active_speaker:
            self.active_speaker = participant_id
            self.log.append(("active_speaker", participant_id))


# The room screen's modules refer to the protocol by this name too.
ScreenSink = FrameSink
