"""Forward error correction for H.264 that crosses an SFU which knows nothing about it.

Why not ULPFEC, RED or FlexFEC: Janus's VideoRoom (1.1.2 and today's master) negotiates one
video codec and drops ``red``/``ulpfec``/``flexfec-03`` from its answers, and it forwards a
retransmission only for a packet it NACKed itself (a proactive RTX copy is dropped). What it
does forward is every packet of the H.264 stream. So the parity travels *inside* the stream:
each parity packet is an H.264 SEI NAL unit of type ``user_data_unregistered`` (our UUID),
which every H.264 decoder must ignore (ISO 14496-10 D.2.7), placed at the front of the next
access unit, before its slices, where an SEI is allowed.

Layout on the wire (RTP sequence order)::

    | frame N: data packets | frame N+1's AU: parity run for N | frame N+1: data ... |

A frame's data packets are cut into groups of at most ``MAX_GROUP``; each group gets ``r``
parity packets of a systematic Reed-Solomon code over GF(256) (Cauchy matrix), so any
``k`` of the ``k + r`` packets rebuild the ``k`` data packets. Every parity packet also
describes where it sits (its run, the frame it protects and the run before that frame), so
one parity packet is enough for a receiver to know which sequence numbers are parity, not
picture. All positions are relative (sequence and timestamp deltas): an SFU shifts both
by a constant per stream. Receivers that know nothing of this (Chromium, stock aiortc) pass
the SEI to their decoder, which skips it.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

UUID = bytes.fromhex("7e1b5cf2a9d44e6b8f3c61d2e5a7b9c4")   # ours; no zero bytes
VERSION = 1
MAX_GROUP = 48                 # data packets per code word; k + r stays far below 256
MAX_PARITY = 32
NAL_SEI = 6
SEI_USER_DATA_UNREGISTERED = 5
SLICE_MAX = 1100               # parity bytes per packet: with its headers under aiortc's 1300
HEADER = struct.Struct("!BBBBBBBBBHHIH")   # version, index, k, r, slice, slices, run_pos,
#                                 run_len, prev_run_len, first_delta, frame_delta, ts_delta, L
BLOCK_HEADER = struct.Struct("!HB")    # payload length, marker


# ---- GF(256), polynomial x^8 + x^4 + x^3 + x^2 + 1 -----------------------------------------

def _gf_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    exp = np.zeros(512, dtype=np.int32)
    log = np.zeros(256, dtype=np.int32)
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    exp[255:510] = exp[:255]
    a = np.arange(256)
    mul = exp[(log[a][:, None] + log[a][None, :]) % 255].astype(np.uint8)
    mul[0, :] = 0
    mul[:, 0] = 0
    return exp, log, mul


_EXP, _LOG, MUL = _gf_tables()


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("GF(256): 0 has no inverse")
    return int(_EXP[255 - _LOG[a]])


def coefficient(index: int, data: int) -> int:
    """Cauchy coefficient of data packet ``data`` in parity ``index``: 1 / (x_i + y_j) with
    x_i = 255 - i and y_j = j, all distinct while k + r <= 256 — so every square sub-matrix
    is invertible and any k packets of a code word rebuild it."""
    return gf_inv((255 - index) ^ data)


def encode_parity(blocks: np.ndarray, r: int) -> np.ndarray:
    """``r`` parity blocks (r x L, uint8) for ``blocks`` (k x L, uint8)."""
    k = blocks.shape[0]
    coeffs = np.array([[coefficient(i, j) for j in range(k)] for i in range(r)], dtype=np.intp)
    return np.bitwise_xor.reduce(MUL[coeffs[:, :, None], blocks[None, :, :]], axis=1)


def recover_blocks(k: int, held: dict[int, np.ndarray], parity: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The missing data blocks of one code word from ``held`` (data index → block) and
    ``parity`` (parity index → block); needs ``len(held) + len(parity) >= k``."""
    missing = [j for j in range(k) if j not in held]
    if not missing:
        return {}
    if len(parity) < len(missing):
        raise ValueError(f"FEC: {len(missing)} packets missing, only {len(parity)} parity held")
    rows = sorted(parity)[:len(missing)]
    rhs = []
    for i in rows:
        acc = parity[i].copy()
        for j, block in held.items():
            acc ^= MUL[coefficient(i, j)][block]
        rhs.append(acc)
    inverse = _gf_invert([[coefficient(i, j) for j in missing] for i in rows])
    out = {}
    for b, j in enumerate(missing):
        acc = np.zeros_like(rhs[0])
        for a in range(len(rows)):
            acc ^= MUL[inverse[b][a]][rhs[a]]
        out[j] = acc
    return out


def _gf_invert(matrix: list[list[int]]) -> list[list[int]]:
    n = len(matrix)
    m = [row[:] + [int(i == j) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col])   # Cauchy: always found
        m[col], m[pivot] = m[pivot], m[col]
        scale = gf_inv(m[col][col])
        m[col] = [int(MUL[scale][v]) for v in m[col]]
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col]
                m[r] = [v ^ int(MUL[f][p]) for v, p in zip(m[r], m[col])]
    return [row[n:] for row in m]


# ---- H.264 SEI carriage --------------------------------------------------------------------

def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes: 00 00 0x (x <= 3) becomes 00 00 03 0x, so no start
    code can appear inside the NAL unit."""
    out, i, n = bytearray(), 0, len(rbsp)
    while (j := rbsp.find(b"\x00\x00", i)) != -1 and j + 2 < n:
        if rbsp[j + 2] <= 3:
            out += rbsp[i:j + 2]
            out.append(3)
            i = j + 2
        else:
            out += rbsp[i:j + 3]
            i = j + 3
    out += rbsp[i:]
    return bytes(out)


def unescape(ebsp: bytes) -> bytes:
    """Remove emulation-prevention bytes (the decoder's view of a NAL unit's payload)."""
    return ebsp.replace(b"\x00\x00\x03", b"\x00\x00")


@dataclass(frozen=True)
class Parity:
    """One parity packet's description and block, as carried in its SEI."""
    index: int            # parity index in its code word
    k: int
    r: int
    slice: int            # which slice of the blocks this packet carries (blocks longer than
    slices: int           # SLICE_MAX are coded as independent slices: one packet each)
    run_pos: int          # position in the run of parity packets at the front of its AU
    run_len: int
    prev_run_len: int     # the run at the front of the protected frame's own AU
    first_delta: int      # own sequence number - first data packet of the code word
    frame_delta: int      # own sequence number - first data packet of the protected frame
    ts_delta: int         # own timestamp - protected frame's timestamp
    length: int           # block length L (all slices)
    block: bytes          # this slice of the parity block, trailing zeros trimmed

    def to_payload(self) -> bytes:
        body = UUID + HEADER.pack(VERSION, self.index, self.k, self.r, self.slice, self.slices,
                                  self.run_pos, self.run_len, self.prev_run_len, self.first_delta, self.frame_delta,
                                  self.ts_delta, self.length) + self.block
        size = len(body)
        sei = bytes([SEI_USER_DATA_UNREGISTERED]) + b"\xff" * (size // 255) + bytes([size % 255])
        return bytes([NAL_SEI]) + escape(sei + body + b"\x80")

    @classmethod
    def from_payload(cls, payload: bytes) -> "Parity | None":
        """The parity in an RTP payload, or None when the payload is anything else."""
        if len(payload) < 20 or payload[0] & 0x1F != NAL_SEI or payload[1] != SEI_USER_DATA_UNREGISTERED:
            return None
        rbsp = unescape(payload[1:])
        pos, size = 1, 0
        while pos < len(rbsp) and rbsp[pos] == 0xFF:
            size, pos = size + 255, pos + 1
        if pos >= len(rbsp):
            return None
        size, pos = size + rbsp[pos], pos + 1
        body = rbsp[pos:pos + size]
        if len(body) != size or body[:16] != UUID or len(body) < 16 + HEADER.size:
            return None
        (version, index, k, r, slice_, slices, run_pos, run_len, prev_run_len, first_delta,
         frame_delta, ts_delta, length) = HEADER.unpack_from(body, 16)
        block = body[16 + HEADER.size:]
        if version != VERSION or not 0 < k <= MAX_GROUP or not index < r <= MAX_PARITY \
                or slice_ >= slices or slices != slice_count(length) or run_pos >= run_len:
            return None
        parity = cls(index, k, r, slice_, slices, run_pos, run_len, prev_run_len, first_delta,
                     frame_delta, ts_delta, length, block)
        return parity if len(block) <= parity.span.stop - parity.span.start else None

    @property
    def span(self) -> slice:
        """The bytes of the blocks this packet's slice covers."""
        return slice_span(self.length, self.slice)

    def padded_block(self) -> np.ndarray:
        out = np.zeros(self.span.stop - self.span.start, dtype=np.uint8)
        out[:len(self.block)] = np.frombuffer(self.block, dtype=np.uint8)
        return out


def slice_count(length: int) -> int:
    return -(-length // SLICE_MAX)


def slice_span(length: int, index: int) -> slice:
    """Slice ``index`` of a block of ``length`` bytes cut into ``slice_count`` equal parts."""
    size = -(-length // slice_count(length))
    return slice(index * size, min(length, (index + 1) * size))


def data_block(payload: bytes, marker: bool, length: int) -> np.ndarray:
    """One RTP packet as a code-word block: its payload length, marker bit and payload."""
    out = np.zeros(length, dtype=np.uint8)
    raw = BLOCK_HEADER.pack(len(payload), int(marker)) + payload
    out[:len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def packet_from_block(block: np.ndarray) -> tuple[bytes, bool]:
    """(payload, marker) of a rebuilt data block."""
    size, marker = BLOCK_HEADER.unpack_from(block.tobytes(), 0)
    if BLOCK_HEADER.size + size > len(block):
        raise ValueError(f"FEC: rebuilt block claims {size} bytes, block holds {len(block)}")
    return block[BLOCK_HEADER.size:BLOCK_HEADER.size + size].tobytes(), bool(marker)


# ---- how much parity ---------------------------------------------------------------------

def parity_count(k: int, loss: float, target: float) -> int:
    """Fewest parity packets for ``k`` data packets such that, with independent loss
    ``loss`` per packet, a code word is lost (more than r of k + r packets gone) with
    probability at most ``target``; at most ``min(MAX_PARITY, 2 k + 2)`` (a one-packet
    frame at 30 % loss needs four parity packets to be lost less than once in 400)."""
    if loss <= 0:
        return 0
    cap = min(MAX_PARITY, 2 * k + 2)
    for r in range(cap + 1):
        n = k + r
        kept = sum(math.comb(n, i) * loss ** i * (1 - loss) ** (n - i) for i in range(r + 1))
        if 1 - kept <= target:
            return r
    return cap
