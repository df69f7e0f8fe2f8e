"""Changing an open FFmpeg encoder's VBV (``maxrate``/``bufsize``) while it runs.

Why: x264 follows a new target only in CBR, with its VBV cap equal to the target. With the
cap above the target (``maxrate`` at the call's maximum, as before) x264 runs ABR over the
whole call's history and a new ``bit_rate`` changes almost nothing — measured at 360p30
(bench/README.md): asked for 150 kbit/s after 800, it still sent 600-1,000 kbit/s, and
behind a 500 kbit/s uplink every picture was lost to congestion the rate control had
already found. With ``maxrate = bufsize / 0.5 s = bit_rate`` moved together, it is at
148 kbit/s within a second and keyframes shrink with the rate (2.6 kB at 150 kbit/s).
FFmpeg's libx264 wrapper passes ``rc_max_rate``/``rc_buffer_size`` changes to
``x264_encoder_reconfig`` before each frame, but PyAV exposes ``max_bit_rate`` read-only
and has no ``rc_buffer_size`` at all.

How: through FFmpeg's own option API (``av_opt_set_int`` on the ``AVCodecContext``, the
same call ``-maxrate`` uses), from the libavutil PyAV itself loaded. The context pointer is
read from the PyAV object (the first field of a Cython ``CodecContext`` after its vtable)
and accepted only if its ``AVClass`` is libavcodec's and the values read back through
PyAV's own getters; otherwise ``set()`` returns False and the encoder falls back to
reopening on big changes, as it does for backends that cannot change rate at all.
"""
from __future__ import annotations

import ctypes
import logging
import os
from functools import cache

import av

log = logging.getLogger("roombox.media.video")

# PyObject header, then the Cython vtable pointer, then ``AVCodecContext *ptr``.
_PTR_OFFSET = object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)


class LiveVbv:
    """Sets ``maxrate`` (bit/s) and ``bufsize`` (bits) on one open PyAV codec context."""

    def __init__(self, ctx: av.CodecContext) -> None:
        self._ctx = ctx
        self._ptr = _context_pointer(ctx)

    def set(self, maxrate_bps: int, bufsize_bits: int) -> bool:
        """Apply both; False (and nothing changed for good) when this FFmpeg refuses."""
        libs = _libraries()
        if self._ptr is None or libs is None:
            return False
        util = libs[1]
        for name, value in ((b"maxrate", maxrate_bps), (b"bufsize", bufsize_bits)):
            if util.av_opt_set_int(self._ptr, name, int(value), 0) != 0:
                return False
        return self._ctx.max_bit_rate == int(maxrate_bps)


def _context_pointer(ctx: av.CodecContext) -> int | None:
    libs = _libraries()
    if libs is None:
        return None
    avcodec, util = libs
    ptr = ctypes.c_void_p.from_address(id(ctx) + _PTR_OFFSET).value
    if not ptr or ptr % ctypes.alignment(ctypes.c_void_p):
        return None
    # AVCodecContext starts with its AVClass pointer: libavcodec's, if this is one.
    if ctypes.c_void_p.from_address(ptr).value != avcodec.avcodec_get_class():
        log.warning("video: cannot reach the encoder's VBV settings in this PyAV; "
                    "big rate changes reopen the encoder")
        return None
    value = ctypes.c_int64()
    if util.av_opt_get_int(ptr, b"b", 0, ctypes.byref(value)) != 0 or value.value != ctx.bit_rate:
        return None
    return ptr


@cache
def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    """(libavcodec, libavutil) as loaded by PyAV: the same directory, so the same build."""
    codec_path = _loaded_library("libavcodec")
    if codec_path is None:
        return None
    folder = os.path.dirname(codec_path)
    util_path = next((os.path.join(folder, name) for name in sorted(os.listdir(folder))
                      if name.startswith("libavutil") and ".so" in name), None)
    if util_path is None:
        return None
    try:
        avcodec, util = ctypes.CDLL(codec_path), ctypes.CDLL(util_path)
    except OSError as exc:
        log.warning("video: cannot load %s (%s)", util_path, exc)
        return None
    avcodec.avcodec_get_class.restype = ctypes.c_void_p
    avcodec.avcodec_get_class.argtypes = []
    util.av_opt_set_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int]
    util.av_opt_get_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                    ctypes.POINTER(ctypes.c_int64)]
    return avcodec, util


def _loaded_library(stem: str) -> str | None:
    """Path of the ``stem`` shared library mapped into this process (PyAV's wheel bundles
    its own FFmpeg under a hashed name; a distribution build uses the system's)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    found = sorted(p for p in paths
                   if os.path.basename(p).startswith(stem) and ".so" in os.path.basename(p))
    return found[0] if found else None
