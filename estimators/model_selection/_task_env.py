"""How a search task runs on a worker: one BLAS/OpenMP thread, and mid-size buffers from the heap.

Search tasks are many small CPU-bound fits (a ``LogisticRegression`` on a fold of a few thousand
rows) that allocate and free the same few hundred-kilobyte arrays thousands of times.

- Threads: a worker's task threads are the parallelism, as in scikit-learn's process pool;
  without a limit, BLAS and scikit-learn's OpenMP loops in two workers on two cores
  oversubscribe.  Set once per process.
- Allocator: distml's worker processes start with a fixed glibc mmap threshold of 64 KiB (set
  by the nanny so that spilled results give their memory back at once).  With it every such
  array is a fresh ``mmap`` whose pages are faulted in and zeroed on first touch: measured on
  load_digits, 12 ``LogisticRegression`` fits take 0.20 s of CPU instead of 0.12 s (31,700 page
  faults instead of none).  While search tasks run, a process uses glibc's own upper limits
  (buffers below 32 MiB come from the heap, which keeps up to 64 MiB free at its top); when
  the last running search task of the process ends, the configured thresholds are restored
  and the heap's free top is handed back, so spilling behaves as before between searches.
  Only where the thresholds were configured (``MALLOC_MMAP_THRESHOLD_`` set) and on glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

__all__ = ["on_worker", "heap_buffers"]

_M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_SEARCH_MMAP_THRESHOLD = 32 << 20    # glibc's largest dynamic mmap threshold (64-bit)
_SEARCH_TRIM_THRESHOLD = 64 << 20    # twice that, as glibc's dynamic rule sets it
_GLIBC_TRIM_DEFAULT = 128 << 10

_threads_limited = False
_lock = threading.Lock()
_running = 0
_libc: Any = None


def _glibc() -> Any:
    """glibc's ``mallopt``/``malloc_trim``, or None on another C library."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def _configured_thresholds() -> tuple[int, int] | None:
    """The mmap and trim thresholds this process was started with, if it was given any."""
    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if mmap is None:
        return None
    try:
        return int(mmap), int(os.environ.get("MALLOC_TRIM_THRESHOLD_", _GLIBC_TRIM_DEFAULT))
    except ValueError:
        logger.debug("unreadable malloc thresholds in the environment: left alone")
        return None


@contextmanager
def heap_buffers() -> Iterator[None]:
    """Within the block (and any other thread's), buffers under 32 MiB come from the heap."""
    libc, configured = _glibc(), _configured_thresholds()
    if libc is None or configured is None:
        yield
        return
    global _running
    with _lock:
        if _running == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _SEARCH_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _SEARCH_TRIM_THRESHOLD)
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, configured[0])
                libc.mallopt(_M_TRIM_THRESHOLD, configured[1])
                libc.malloc_trim(0)


def on_worker(func: Callable, *args: Any) -> Any:
    """``func(*args)`` as a search task: one BLAS/OpenMP thread, mid-size buffers on the heap."""
    global _threads_limited
    if not _threads_limited:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
        _threads_limited = True
    with heap_buffers():
        return func(*args)
