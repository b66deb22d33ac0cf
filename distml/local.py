"""Run a task graph in this process on a thread pool (used when no client is open)."""

from __future__ import annotations

import heapq
import os
from collections.abc import Hashable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from distml.errors import GraphError
from distml.graph import (check_graph, cull, execute_task, flatten_keys, normalize_graph,
                          order, pack_results, wire_key)

__all__ = ["get_threaded"]


def get_threaded(dsk: Mapping, keys: Any, num_workers: int | None = None) -> Any:
    """Compute ``keys`` (a key or nested list of keys) of the Dask-style graph ``dsk``.

    Tasks run on ``num_workers`` threads (default: the CPU count) in :func:`order` priority;
    intermediate results are dropped as soon as no remaining task needs them.  The first
    task exception is raised after the running tasks finish.
    """
    flat: list[Hashable] = []
    flatten_keys(keys, flat)
    wanted = {wire_key(k) for k in flat}
    graph = normalize_graph(dsk)
    missing = sorted(w for w in wanted if w not in graph)
    if missing:
        raise GraphError(f"requested key(s) not in the graph: {missing[:5]}")
    all_deps = {k: d for k, (_, d) in graph.items()}
    deps = {k: all_deps[k] for k in cull(all_deps, wanted)}
    check_graph(deps)
    priority = order(deps)

    n_waiting = {k: len(ds) for k, ds in deps.items()}
    dependents: dict[str, list[str]] = {k: [] for k in deps}
    for k, ds in deps.items():
        for d in ds:
            dependents[d].append(k)
    remaining = {k: len(v) for k, v in dependents.items()}
    ready = [(priority[k], k) for k, n in n_waiting.items() if n == 0]
    heapq.heapify(ready)
    data: dict[str, Any] = {}
    workers = num_workers or os.cpu_count() or 1
    running: dict[Any, str] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while ready or running:
            while ready and len(running) < workers and error is None:
                _, key = heapq.heappop(ready)
                running[pool.submit(execute_task, graph[key][0], data)] = key
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    error = error or exc
                    continue
                data[key] = fut.result()
                for d in deps[key]:
                    remaining[d] -= 1
                    if remaining[d] == 0 and d not in wanted:
                        del data[d]
                for dep in dependents[key]:
                    n_waiting[dep] -= 1
                    if n_waiting[dep] == 0:
                        heapq.heappush(ready, (priority[dep], dep))
            if error is not None and not running:
                break
    if error is not None:
        raise error
    return pack_results(keys, data)
