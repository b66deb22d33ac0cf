"""What the estimator benchmarks share: best-of timing, and the same row-chunked data placed on
the workers of a 2 x 1 distml cluster or a 2 x 1 Dask cluster before the clock starts."""

from __future__ import annotations

import gc
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def best_of(fit: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest of ``repeat`` runs of ``fit``, and the last result."""
    times, model = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return min(times), model


_AUTOGROUP_FLAG = Path("/proc/sys/kernel/sched_autogroup_enabled")
#: Whether the kernel shares the CPU among sessions rather than processes.
AUTOGROUP = _AUTOGROUP_FLAG.exists() and _AUTOGROUP_FLAG.read_text().strip() == "1"


def load_note(load_at_start: float) -> str:
    """The sentence under a benchmark table about the machine's load while it ran."""
    return (f"Load average (1 min) when the run started: {load_at_start:.2f}, when it ended: "
            f"{os.getloadavg()[0]:.2f}, on {os.cpu_count()} cores (other work on the machine "
            "skews every figure; the systems took turns run by run)." + (
                " The kernel shares the CPU among sessions (autogroup), so under load a cluster"
                "'s processes together get one session's share, as one process would: only a "
                "quiet machine shows their parallel speed-up." if AUTOGROUP else ""))


def take_turns(fits: list[Callable[[], Any] | None], repeat: int
               ) -> tuple[list[list[float]], list[Any]]:
    """Run every fit once per turn, ``repeat`` turns (``None`` entries are skipped): load that
    comes and goes on a shared machine then weighs on all systems alike instead of on
    whichever ran then. Returns each fit's times and its last fitted model."""
    times: list[list[float]] = [[] for _ in fits]
    models: list[Any] = [None] * len(fits)
    for _ in range(repeat):
        for i, fit in enumerate(fits):
            if fit is not None:
                seconds, models[i] = best_of(fit, 1)
                times[i].append(seconds)
                gc.collect()
    return times, models


@contextmanager
def distml_data(X: np.ndarray, y: np.ndarray, chunk: int) -> Iterator[tuple[Any, Any]]:
    """``(X, y)`` as distml arrays whose row blocks already live on a 2-worker cluster."""
    import distml.array as da
    from distml import Client, wait

    starts = range(0, len(X), chunk)
    rows = tuple(min(chunk, len(X) - s) for s in starts)
    with Client(n_workers=2, threads_per_worker=1) as client:
        x_blocks = client.scatter([X[s:s + chunk] for s in starts])
        y_blocks = client.scatter([y[s:s + chunk] for s in starts])
        Xd = da.from_blocks([[f] for f in x_blocks], chunks=(rows, (X.shape[1],)), dtype=X.dtype)
        yd = da.from_blocks(y_blocks, chunks=(rows,), dtype=y.dtype)
        # persisted like dask's arrays: otherwise every fit re-creates the from_blocks keys,
        # and the scheduler may run some of them (copying 40 MB blocks) on the other worker
        Xd, yd = client.persist([Xd, yd])
        wait([f for arr in (Xd, yd) for f in arr.dask.values()])
        yield Xd, yd


@contextmanager
def dask_data(X: np.ndarray, y: np.ndarray, chunk: int) -> Iterator[tuple[Any, Any]]:
    """``(X, y)`` as dask arrays persisted on a 2-worker dask LocalCluster."""
    import dask.array as dsa
    from dask.distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        Xd = dsa.from_array(X, chunks=(chunk, X.shape[1])).persist()
        yd = dsa.from_array(y, chunks=(chunk,)).persist()
        wait([Xd, yd])
        yield Xd, yd


def warm_up_sample(X: np.ndarray, y: np.ndarray, rows: int, from_array: Callable) -> tuple:
    """A small chunked sample to fit once before timing, so module imports on the workers are
    not timed."""
    return (from_array(X[:rows], chunks=(rows // 4, X.shape[1])),
            from_array(y[:rows], chunks=rows // 4))
