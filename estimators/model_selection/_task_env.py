"""How a search task runs on a worker: with one BLAS/OpenMP thread.

Search tasks are many small CPU-bound fits (a ``LogisticRegression`` on a fold of a few thousand
rows).  A worker's task threads are the parallelism, as in scikit-learn's process pool; without
a limit, BLAS and scikit-learn's OpenMP loops in two workers on two cores oversubscribe.  The
limit is set once per process.  (Mid-size work buffers come from the heap since the workers'
mmap threshold is 4 MiB: with the former 64 KiB, 12 digits fits took 0.20 s of CPU instead of
0.12 s, every array faulted in afresh.)
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["on_worker"]

_threads_limited = False


def on_worker(func: Callable, *args: Any) -> Any:
    """``func(*args)`` as a search task: BLAS and OpenMP limited to one thread."""
    global _threads_limited
    if not _threads_limited:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
        _threads_limited = True
    return func(*args)
