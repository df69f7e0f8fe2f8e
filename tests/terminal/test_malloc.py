"""glibc malloc tuning for `roombox run`: applied unless the environment says otherwise."""
from __future__ import annotations

import subprocess
import sys

from terminal.malloc import tune_malloc

PROBE = """
import ctypes, sys
from terminal.malloc import tune_malloc
print(sorted(tune_malloc()))
# A 1 MiB block below the default 32 MiB ceiling but above our 128 KiB threshold must be
# mmapped: glibc's mallinfo2 counts it in hblkhd.
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                              "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
for _ in range(3):                  # freeing mmapped blocks is what raises glibc's own threshold
    libc.free(libc.malloc(1 << 20))
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblkhd >= 1 << 20)
"""


def run_probe(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ".", **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[:2]


def test_frames_sized_blocks_are_mmapped_and_returned_with_our_tuning():
    applied, mmapped = run_probe({})
    assert applied == "['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_']" and mmapped == "True"


def test_glibc_defaults_keep_reused_large_blocks_in_the_heap_and_the_user_can_opt_out():
    applied, mmapped = run_probe({"ROOMBOX_MALLOC_TUNING": "off"})
    assert applied == "[]" and mmapped == "False", "the behaviour the tuning exists to avoid"


def test_the_environment_wins():
    assert tune_malloc({"MALLOC_ARENA_MAX": "4"}) == {"MALLOC_MMAP_THRESHOLD_": 128 * 1024}
