"""The worker process's C allocator: fast for mid-size buffers, and giving memory back after a
spill.

glibc serves buffers under its mmap threshold from the heap and bigger ones with fresh ``mmap``s,
whose pages are faulted in and zeroed on first touch and returned at once when freed. Its
default threshold moves up to 32 MiB as big buffers are freed, so memory freed by spilling could
stay in the heap; distml once fixed it at 64 KiB instead, which made the many hundred-kilobyte
arrays of a model fit a fresh mapping each (measured on load_digits: 12 LogisticRegression fits
took 0.20 s of CPU instead of 0.12 s, with 31,700 page faults instead of none).

The threshold is now fixed at :data:`MMAP_THRESHOLD` (set by the nanny before Python starts):
mid-size work buffers are reused from the heap, results of several MiB are still mapped and
unmapped whole, and after each spill :func:`release_free_memory` hands the heap's free pages back
to the system, so spilling lowers resident memory.

Fixing the mmap threshold also stops glibc from raising its trim threshold (which it otherwise
keeps at twice the mmap threshold), leaving it at 128 KiB: every free that left that much at the
heap's top gave the pages back, and the next fit faulted them in again.  Running the digits
search's fits in one thread took 34,500 page faults and 0.75 s of CPU per search that way,
against 2,400 faults and 0.65 s with glibc's defaults; the workers of a search took 2,500 faults
per search, against 40 now.  So the nanny fixes the trim threshold too, at
:data:`TRIM_THRESHOLD`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

logger = logging.getLogger(__name__)

#: Buffers of this many bytes or more get their own mapping (``MALLOC_MMAP_THRESHOLD_``).
MMAP_THRESHOLD = 4 * 2**20
#: Free memory at the heap's top kept for reuse, not returned at once (``MALLOC_TRIM_THRESHOLD_``).
TRIM_THRESHOLD = 8 * MMAP_THRESHOLD

_libc: Any = None


def _glibc() -> Any:
    """glibc, if this process uses it (with ``malloc_trim``); None otherwise."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system (``malloc_trim(0)``).
    Returns whether glibc was there to do it."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
