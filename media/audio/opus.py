"""libopus through ctypes: the parts of the Opus API that loss resilience needs and that
FFmpeg's libopus wrappers (what aiortc uses through PyAV) do not expose.

- ``OpusDecoder.decode_fec(next_packet, samples)`` rebuilds a lost packet from the in-band
  FEC (LBRR) data carried by the packet after it; ``conceal(samples)`` runs Opus's own
  packet-loss concealment. FFmpeg always calls ``opus_decode(..., decode_fec=0)`` and
  treats an empty packet as end of stream, so neither is reachable through PyAV.
- ``OpusEncoder`` can change in-band FEC, expected packet loss and bitrate while encoding
  (``opus_encoder_ctl``); FFmpeg's ``fec``/``packet_loss`` options are fixed when the codec
  is opened.

The library is the system's libopus (Debian ``libopus0``, a dependency of FFmpeg).
Instances are not thread-safe: use one from one thread at a time.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from media.audio.errors import AudioConfigError, AudioError

SAMPLE_RATE = 48000
MAX_PACKET_BYTES = 1500          # one RTP payload; Opus never needs more at these rates
MAX_FRAME_SAMPLES = 5760         # 120 ms at 48 kHz: the longest Opus packet

_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001


class OpusError(AudioError, RuntimeError):
    """libopus refused a call (the message carries libopus's reason)."""


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise OpusError(f"opus: cannot load libopus ({exc}); install the 'libopus0' package") from exc
    ptr, i32, buf = ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ctypes.c_int]
    lib.opus_decoder_create.restype = ptr
    lib.opus_decoder_create.argtypes = [i32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.argtypes = [ptr]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [ptr, buf, i32, ctypes.POINTER(ctypes.c_int16), ctypes.c_int,
                                ctypes.c_int]
    lib.opus_packet_get_nb_samples.restype = ctypes.c_int
    lib.opus_packet_get_nb_samples.argtypes = [buf, i32, i32]
    lib.opus_encoder_create.restype = ptr
    lib.opus_encoder_create.argtypes = [i32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encoder_destroy.argtypes = [ptr]
    lib.opus_encode.restype = i32
    lib.opus_encode.argtypes = [ptr, ctypes.POINTER(ctypes.c_int16), ctypes.c_int, buf, i32]
    # Variadic: no argtypes, so every argument is passed as an explicit ctypes value.
    lib.opus_encoder_ctl.restype = ctypes.c_int
    return lib


def _check(result: int, what: str) -> int:
    if result < 0:
        raise OpusError(f"opus: {what} failed ({_lib().opus_strerror(result).decode()})")
    return result


def packet_samples(packet: bytes) -> int:
    """Samples per channel at 48 kHz that ``packet`` decodes to (raises OpusError if it is
    not a valid Opus packet)."""
    return _check(_lib().opus_packet_get_nb_samples(packet, len(packet), SAMPLE_RATE),
                  f"reading the duration of a {len(packet)}-byte packet")


class OpusDecoder:
    """A mono 48 kHz Opus decoder (stereo streams are downmixed by libopus)."""

    def __init__(self) -> None:
        error = ctypes.c_int(0)
        self._state = _lib().opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        _check(error.value, "creating a decoder")
        self._pcm = (ctypes.c_int16 * MAX_FRAME_SAMPLES)()

    def decode(self, packet: bytes) -> np.ndarray:
        """The int16 samples of one received packet."""
        return self._run(packet, MAX_FRAME_SAMPLES, 0, "decoding a packet")

    def decode_fec(self, next_packet: bytes, samples: int) -> np.ndarray:
        """The lost packet before ``next_packet``, rebuilt from its in-band FEC; ``samples``
        is the lost packet's duration. Without FEC data in ``next_packet`` libopus conceals
        instead, so this never fails for lack of FEC. Decode ``next_packet`` itself after."""
        return self._run(next_packet, samples, 1, "decoding in-band FEC")

    def conceal(self, samples: int) -> np.ndarray:
        """``samples`` of packet-loss concealment (a multiple of 2.5 ms)."""
        return self._run(None, samples, 0, "concealing a lost packet")

    def _run(self, packet: bytes | None, samples: int, fec: int, what: str) -> np.ndarray:
        if self._state is None:
            raise OpusError(f"opus: {what} on a closed decoder")
        size = 0 if packet is None else len(packet)
        count = _check(_lib().opus_decode(self._state, packet, size, self._pcm,
                                          min(samples, MAX_FRAME_SAMPLES), fec), what)
        return np.ctypeslib.as_array(self._pcm)[:count].copy()

    def close(self) -> None:
        if self._state is not None:
            _lib().opus_decoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


class OpusEncoder:
    """A mono 48 kHz Opus voice encoder whose FEC, expected loss and bitrate can change
    between packets. ``encode(samples)`` takes 2.5-60 ms of int16 samples."""

    def __init__(self, bitrate_bps: int, fec: bool = True, packet_loss_pct: int = 0,
                 complexity: int = 9) -> None:
        error = ctypes.c_int(0)
        self._state = _lib().opus_encoder_create(SAMPLE_RATE, 1, _APPLICATION_VOIP, ctypes.byref(error))
        _check(error.value, "creating an encoder")
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._ctl(_SET_SIGNAL, _SIGNAL_VOICE, "signal")
        self._ctl(_SET_COMPLEXITY, complexity, "complexity")
        self.bitrate_bps = self.packet_loss_pct = 0
        self.fec = False
        self.configure(bitrate_bps=bitrate_bps, fec=fec, packet_loss_pct=packet_loss_pct)

    def configure(self, bitrate_bps: int | None = None, fec: bool | None = None,
                  packet_loss_pct: int | None = None) -> None:
        """Change any of the settings; they apply from the next packet."""
        if bitrate_bps is not None and bitrate_bps != self.bitrate_bps:
            if not 6000 <= bitrate_bps <= 510000:
                raise AudioConfigError(f"opus: bitrate_bps must be 6000-510000, got {bitrate_bps}")
            self._ctl(_SET_BITRATE, bitrate_bps, "bitrate")
            self.bitrate_bps = bitrate_bps
        if fec is not None and fec != self.fec:
            self._ctl(_SET_INBAND_FEC, int(fec), "in-band FEC")
            self.fec = fec
        if packet_loss_pct is not None and packet_loss_pct != self.packet_loss_pct:
            if not 0 <= packet_loss_pct <= 100:
                raise AudioConfigError(f"opus: packet_loss_pct must be 0-100, got {packet_loss_pct}")
            self._ctl(_SET_PACKET_LOSS_PERC, packet_loss_pct, "expected packet loss")
            self.packet_loss_pct = packet_loss_pct

    def _ctl(self, request: int, value: int, what: str) -> None:
        _check(_lib().opus_encoder_ctl(ctypes.c_void_p(self._state), ctypes.c_int(request),
                                      ctypes.c_int(value)),
               f"setting {what} to {value}")

    def encode(self, samples: np.ndarray) -> bytes:
        """One Opus packet for ``samples`` (int16 mono at 48 kHz, 120-2880 samples)."""
        if self._state is None:
            raise OpusError("opus: encoding on a closed encoder")
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        size = _check(_lib().opus_encode(self._state, pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                                         len(pcm), self._out, MAX_PACKET_BYTES),
                      f"encoding {len(pcm)} samples")
        return self._out.raw[:size]

    def close(self) -> None:
        if self._state is not None:
            _lib().opus_encoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()
