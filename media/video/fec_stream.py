"""Both ends of our in-band video FEC (fec.py): the sender's packer that puts a parity run
for the previous frame at the front of each access unit, and the receiver's repair that
rebuilds lost packets and tells the jitter buffer which sequence numbers are parity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Container

import numpy as np
from aiortc.codecs.h264 import H264Encoder, h264_depayload
from aiortc.rtp import RtpPacket

from media.video.fec import (BLOCK_HEADER, HEADER, MAX_GROUP, UUID, Parity, data_block,
                             encode_parity, packet_from_block, parity_count, recover_blocks,
                             slice_count, slice_span)

# A code word may be lost (more than r of its k + r packets gone) this often at the expected
# loss: at 30 fps about one frame in 17 s then needs a keyframe.
WORD_LOSS_TARGET = 0.002
# A lost keyframe costs the most (every viewer waits for the next one, itself large and
# exposed), and keyframes are rare: they are protected as if loss were this much worse.
KEYFRAME_LOSS_FACTOR = 2.0
KEYFRAME_MIN_LOSS = 0.3
MAX_RUN = 255
MAX_PARITY_PAYLOAD = 1300       # aiortc's own packet size limit for H.264 payloads
ALLOWANCE_FRAMES = 4            # unspent parity allowance carried over, in frames' worth
# A parity packet's bytes beyond its block: NAL and SEI headers, our UUID and header, stop bit.
PARITY_HEADER_BYTES = 4 + len(UUID) + HEADER.size + 1


def _groups(n: int) -> list[tuple[int, int]]:
    """(start, k) of the code words for a frame of ``n`` data packets, sizes balanced."""
    count = -(-n // MAX_GROUP)
    base, extra = divmod(n, count)
    out, start = [], 0
    for g in range(count):
        k = base + (g < extra)
        out.append((start, k))
        start += k
    return out


@dataclass
class _Frame:
    payloads: list[bytes]
    timestamp: int
    front_run: int        # parity packets in front of this frame's data (its AU's run)
    keyframe: bool = False


class ProtectedH264Packer(H264Encoder):
    """aiortc's H.264 packer (``pack()`` of pre-encoded packets) that sends, at the front
    of each access unit, the parity of the previous frame's packets for ``expected_loss``.
    Goes into an RTCRtpSender's encoder slot (``VideoSender`` does it).

    ``max_overhead`` (None: no limit) caps parity bytes per picture byte: each frame earns
    that share of its own size, unspent allowance carries over up to ``ALLOWANCE_FRAMES``
    frames' worth, and a frame whose planned parity costs more gets fewer parity packets.
    At low rates a frame is one packet and the plan for 30 % loss is four parity packets
    of the same size: without the cap parity was four times the picture and the stream
    three times the rate the congestion control had asked for."""

    def __init__(self, expected_loss: float = 0.0) -> None:
        super().__init__()
        self.expected_loss = expected_loss
        self.max_overhead: float | None = None
        self._allowance = 0.0
        self._previous: _Frame | None = None
        self.data_bytes = 0
        self.parity_bytes = 0
        self.parity_packets = 0

    def pack(self, packet) -> tuple[list[bytes], int]:
        payloads, timestamp = super().pack(packet)
        if not payloads:
            return payloads, timestamp
        run = self.parity_run(self._previous, timestamp) if self._previous else []
        self._previous = _Frame(payloads, timestamp, len(run), bool(packet.is_keyframe))
        self.data_bytes += sum(map(len, payloads))
        self.parity_bytes += sum(map(len, run))
        self.parity_packets += len(run)
        return run + payloads, timestamp

    def parity_run(self, frame: _Frame, timestamp: int) -> list[bytes]:
        """The parity packets protecting ``frame``, to lead the access unit at ``timestamp``."""
        n = len(frame.payloads)
        loss = self.expected_loss
        if frame.keyframe and loss > 0:
            loss = min(0.5, max(KEYFRAME_MIN_LOSS, KEYFRAME_LOSS_FACTOR * loss))
        words = []
        for start, k in _groups(n):
            r = parity_count(k, loss, WORD_LOSS_TARGET)
            if r:
                words.append((start, k, r))
        while self._run_len(frame, words) > MAX_RUN:             # a huge keyframe
            words = [(s, k, max(1, r - 1)) for s, k, r in words]
        words = self._within_allowance(frame, words)
        run_len = self._run_len(frame, words)
        run, pos = [], 0
        ts_delta = (timestamp - frame.timestamp) & 0xFFFFFFFF
        for start, k, r in words:
            chunk = frame.payloads[start:start + k]
            length = self._length(frame, start, k)
            last = start + k == n
            blocks = np.stack([data_block(p, last and j == k - 1, length) for j, p in enumerate(chunk)])
            slices = slice_count(length)
            for index, block in enumerate(encode_parity(blocks, r)):
                for slice_ in range(slices):
                    parity = Parity(index=index, k=k, r=r, slice=slice_, slices=slices,
                                    run_pos=pos, run_len=run_len, prev_run_len=frame.front_run,
                                    first_delta=pos + n - start, frame_delta=pos + n,
                                    ts_delta=ts_delta, length=length,
                                    block=np.trim_zeros(block[slice_span(length, slice_)], "b").tobytes())
                    run.append(parity.to_payload())
                    pos += 1
        if any(len(p) > MAX_PARITY_PAYLOAD for p in run):
            return []           # pathological escaping: rather no parity than a packet too long
        return run

    def _within_allowance(self, frame: _Frame, words: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """``words`` with parity counts lowered, largest first, to what ``max_overhead``
        leaves for this frame; spends the allowance."""
        if self.max_overhead is None:
            return words
        earned = self.max_overhead * sum(map(len, frame.payloads))
        self._allowance = min(self._allowance + earned, ALLOWANCE_FRAMES * earned)
        while words and self._run_bytes(frame, words) > self._allowance:
            largest = max(range(len(words)), key=lambda i: words[i][2])
            start, k, r = words[largest]
            words = words[:largest] + ([(start, k, r - 1)] if r > 1 else []) + words[largest + 1:]
        self._allowance -= self._run_bytes(frame, words)
        return words

    def _run_bytes(self, frame: _Frame, words: list[tuple[int, int, int]]) -> int:
        return sum(r * (length + slice_count(length) * PARITY_HEADER_BYTES)
                   for length, r in ((self._length(frame, s, k), r) for s, k, r in words))

    def _run_len(self, frame: _Frame, words: list[tuple[int, int, int]]) -> int:
        return sum(r * slice_count(self._length(frame, s, k)) for s, k, r in words)

    @staticmethod
    def _length(frame: _Frame, start: int, k: int) -> int:
        return BLOCK_HEADER.size + max(map(len, frame.payloads[start:start + k]))

    @property
    def data_share(self) -> float:
        """Of the bytes sent so far, the share that was picture (1.0 before any)."""
        total = self.data_bytes + self.parity_bytes
        return self.data_bytes / total if total else 1.0


@dataclass
class _Word:
    k: int
    length: int
    timestamp: int
    payload_type: int
    # per slice of the blocks: parity index → that slice of the parity block
    parity: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)

    def recoverable(self, held: int) -> bool:
        slices = slice_count(self.length)
        return len(self.parity) == slices and all(held + len(p) >= self.k for p in self.parity.values())


class FecRepair:
    """Receiver side, driven by the jitter buffer. ``on_parity()`` files a parity packet
    and returns the (sequence number, timestamp) pairs it shows to be parity; ``rebuild()``
    returns the data packets that can be rebuilt from what is held."""

    def __init__(self) -> None:
        self._words: dict[int, _Word] = {}     # first data sequence number → code word
        self.parity_received = 0
        self.rebuilt = 0

    @staticmethod
    def parse(packet: RtpPacket) -> Parity | None:
        return Parity.from_payload(packet.payload)

    def on_parity(self, packet: RtpPacket, parity: Parity) -> list[tuple[int, int]]:
        self.parity_received += 1
        own, ts = packet.sequence_number, packet.timestamp
        frame_ts = (ts - parity.ts_delta) & 0xFFFFFFFF
        first = (own - parity.first_delta) & 0xFFFF
        word = self._words.setdefault(first, _Word(parity.k, parity.length, frame_ts, packet.payload_type))
        if word.k == parity.k and word.length == parity.length:
            word.parity.setdefault(parity.slice, {})[parity.index] = parity.padded_block()
        run_start = (own - parity.run_pos) & 0xFFFF
        frame_start = (own - parity.frame_delta) & 0xFFFF
        known = [((run_start + i) & 0xFFFF, ts) for i in range(parity.run_len)]
        known += [((frame_start - parity.prev_run_len + i) & 0xFFFF, frame_ts)
                  for i in range(parity.prev_run_len)]
        return known

    @property
    def has_words(self) -> bool:
        """Any parity filed that might still rebuild something (cheap check per packet)."""
        return bool(self._words)

    def rebuild(self, missing: Container[int], held: dict[int, RtpPacket]) -> list[RtpPacket]:
        """Rebuilt data packets for every code word with a missing packet that has enough
        packets held. A word whose packets were partly released already is left alone."""
        out = []
        for first, word in list(self._words.items()):
            seqs = [(first + j) & 0xFFFF for j in range(word.k)]
            if not any(s in missing for s in seqs):
                continue
            if not all(s in missing or s in held for s in seqs):
                continue
            present = {j: held[s] for j, s in enumerate(seqs) if s in held}
            if not word.recoverable(len(present)):
                continue
            blocks = {j: data_block(p.payload, bool(p.marker), word.length) for j, p in present.items()}
            parts: dict[int, list[np.ndarray]] = {}
            for slice_, parity in sorted(word.parity.items()):
                span = slice_span(word.length, slice_)
                sliced = {j: b[span] for j, b in blocks.items()}
                for j, part in recover_blocks(word.k, sliced, parity).items():
                    parts.setdefault(j, []).append(part)
            for j, block in ((j, np.concatenate(p)) for j, p in parts.items()):
                try:
                    payload, marker = packet_from_block(block)
                    rebuilt = RtpPacket(payload_type=word.payload_type, marker=int(marker),
                                        sequence_number=seqs[j], timestamp=word.timestamp,
                                        payload=payload)
                    rebuilt._data = h264_depayload(payload)  # type: ignore[attr-defined]
                except (ValueError, IndexError):
                    continue       # a corrupt word (not ours after all): leave it to NACK
                out.append(rebuilt)
            del self._words[first]
        self.rebuilt += len(out)
        return out

    def forget(self, keep: Callable[[int], bool]) -> None:
        """Drop code words whose first sequence number ``keep(seq)`` rejects."""
        for first in [f for f in self._words if not keep(f)]:
            del self._words[first]

    def clear(self) -> None:
        self._words.clear()
