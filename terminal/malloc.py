"""glibc malloc settings for a long-running media process.

Decoded and captured video frames are 0.5-3 MB each and come and go 30 times a second per
participant, from several threads. glibc's defaults serve that badly: it raises its mmap
threshold each time a large mmapped block is freed (up to 32 MB), so after the first
frames every frame lands in a heap arena, and with up to 8 arenas per core the freed
space stays fragmented and resident. Measured in a 4-party call (bench/join.py): 202 MB
resident and growing with the defaults plus MALLOC_ARENA_MAX=2; 161 MB with a fixed 128 KiB
mmap threshold as well (frames go back to the kernel when freed).

Environment variables a user sets (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) win; on a
non-glibc system this does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("roombox.terminal")

M_MMAP_THRESHOLD = -3   # from glibc's malloc.h
M_ARENA_MAX = -8
SETTINGS = {"MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 128 * 1024), "MALLOC_ARENA_MAX": (M_ARENA_MAX, 2)}
OFF_ENV = "ROOMBOX_MALLOC_TUNING"    # "off" keeps glibc's defaults (benchmark baseline)


def tune_malloc(environ: dict[str, str] | None = None) -> dict[str, int]:
    """Apply our settings where the environment sets none; returns what was applied."""
    env = os.environ if environ is None else environ
    if env.get(OFF_ENV, "").lower() == "off":
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}     # not glibc (musl has no mallopt): nothing to tune
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = {}
    for name, (param, value) in SETTINGS.items():
        if name in env:
            continue
        if mallopt(param, value) == 1:
            applied[name] = value
        else:
            log.warning("terminal: mallopt(%s, %s) refused", name, value)
    return applied
