"""Where encoded video goes: each output has ``start()``, ``stop()`` and
``write(packet, keyframe)`` and drops packets until it has seen a keyframe, because a
decoder cannot start anywhere else. ``write`` is called on the event loop and must not block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import av


class EncodedOutput:
    """Base of every encoded-video output. Subclasses implement ``_deliver``.

    ``on_keyframe_needed`` (set by the encoder when the output is added) is called when the
    output starts or loses data, so the encoder produces a keyframe for it now rather than at
    the next periodic one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_started = False
        self.is_waiting_for_keyframe = True
        self.packets_written = 0
        self.packets_dropped = 0
        self.keyframes_written = 0
        self.on_keyframe_needed: Callable[[str], None] | None = None

    def start(self) -> None:
        """Accept packets from the next keyframe on."""
        self.is_started = True
        self.is_waiting_for_keyframe = True
        self._need_keyframe(f"{self.name} started")

    def stop(self) -> None:
        """Drop everything from now on; safe to call twice."""
        self.is_started = False

    def write(self, packet: av.Packet, keyframe: bool) -> None:
        """Hand one encoded frame to the output (event loop; never blocks)."""
        if not self.is_started:
            return
        if self.is_waiting_for_keyframe and not keyframe:
            self.packets_dropped += 1
            return
        self.is_waiting_for_keyframe = False
        self.packets_written += 1
        self.keyframes_written += keyframe
        self._deliver(packet, keyframe)

    def _deliver(self, packet: av.Packet, keyframe: bool) -> None:
        raise NotImplementedError

    def _lost_data(self, why: str) -> None:
        """The output had to drop a packet: wait for (and ask for) the next keyframe."""
        self.is_waiting_for_keyframe = True
        self._need_keyframe(why)

    def _need_keyframe(self, why: str) -> None:
        if self.on_keyframe_needed is not None:
            self.on_keyframe_needed(why)

    def status(self) -> dict[str, Any]:
        return {"started": self.is_started, "written": self.packets_written,
                "keyframes": self.keyframes_written, "dropped": self.packets_dropped}


class AnnexBFileOutput(EncodedOutput):
    """Records the raw H.264 elementary stream to a file (playable with ffplay, decodable by
    any H.264 decoder). Small writes to a local file: fine on the loop."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"file:{path.name}")
        self.path = path
        self._file = None

    def start(self) -> None:
        self._file = open(self.path, "wb")
        super().start()

    def stop(self) -> None:
        super().stop()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _deliver(self, packet: av.Packet, keyframe: bool) -> None:
        self._file.write(bytes(packet))
