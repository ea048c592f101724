"""glibc malloc settings that let XLA:CPU reuse its buffers between calls.

XLA:CPU allocates each call's outputs and temporary buffer with the host's malloc and
frees them when the call ends. glibc serves blocks above its mmap threshold (at most
32 MiB, and per-thread arenas hold at most 64 MiB) with a fresh ``mmap`` and returns them
with ``munmap``, so every call of a jitted step faults in and zeroes its buffers page by
page again: a critic or actor step of the tiny benchmark took 54,000 page faults
(211 MiB) per call and ran 1.5x slower than with the buffers kept (docs/benchmarks.md).

``configure()`` keeps them: one arena (the main heap grows without the 64 MiB limit),
blocks up to 1 GiB from the heap, and freed memory kept for reuse up to 1 GiB. The
process's peak memory does not grow (the same blocks are reused); its resident memory
after a phase may stay nearer that peak. It changes nothing where the C library is not
glibc, or where the user set glibc's malloc variables (``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``): theirs stand.
It must run before XLA's threads first allocate (the package runs it on import).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def configure() -> bool:
    """Applies the settings above; True if it did (glibc, and none of the user's own)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return all(mallopt(param, value) == 1 for param, value in (
        (M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES)))
