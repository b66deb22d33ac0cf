"""Snapshots of the scheduler's state as plain dicts, the only thing the dashboard's pages read.

A snapshot is taken on the scheduler's event loop (so it sees a consistent state) and copies what
pages need: workers, task counts, progress per task kind, the newest task timings, activities and
recent memory samples. HTTP handlers then serve (and encode) only the latest snapshot, never the
live state, so the cost to the scheduler is the snapshot itself, which the dashboard rate-limits.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable

from distml.scheduler.model import (ERRED, MEMORY, PROCESSING, QUEUED, RELEASED, WAITING,
                                    key_prefix)

if TYPE_CHECKING:
    from distml.scheduler.server import Scheduler

#: Newest task records a snapshot carries (the page draws the last minute or so).
STREAM_RECORDS = 2000
#: Memory samples a snapshot carries (at 0.5 s apart: two minutes).
MEMORY_SAMPLES = 240
#: Task kinds listed in the progress table, unfinished kinds first.
MAX_PREFIXES = 50


def _worker_rows(scheduler: "Scheduler") -> list[dict[str, Any]]:
    rows = []
    for ws in scheduler.state.workers.values():
        metrics = ws.metrics
        rows.append({
            "address": ws.address, "name": ws.name, "nthreads": ws.nthreads,
            "memory_limit": ws.memory_limit, "memory": metrics.get("rss", 0),
            "managed": metrics.get("managed", 0), "spilled": metrics.get("spilled", 0),
            "paused": bool(ws.paused), "executing": metrics.get("executing", 0),
            "processing": len(ws.processing), "keys": len(ws.has_what), "nbytes": ws.nbytes,
        })
    rows.sort(key=lambda row: (row["name"], row["address"]))
    return rows


def _prefix_rows(scheduler: "Scheduler") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Progress per task kind over the tasks the scheduler holds: a released task has been
    computed and its result freed (new tasks leave ``released`` at once), so it counts as done."""
    pairs = Counter([(ts.prefix, ts.state) for ts in scheduler.state.tasks.values()])
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    states: dict[str, int] = defaultdict(int)
    for (prefix, state), n in pairs.items():
        counts[prefix][state] = n
        states[state] += n
    rows = []
    for prefix, row in counts.items():
        rows.append({"prefix": prefix, "total": sum(row.values()),
                     "done": row[MEMORY] + row[RELEASED], "erred": row[ERRED],
                     "processing": row[PROCESSING], "waiting": row[QUEUED] + row[WAITING],
                     "memory": row[MEMORY]})
    rows.sort(key=lambda r: r["done"] + r["erred"] >= r["total"])  # unfinished first, stable
    return rows[:MAX_PREFIXES], dict(states)


def take(scheduler: "Scheduler", previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A snapshot of ``scheduler``: plain data only (lists, dicts, numbers, strings). Task kinds
    of records already in ``previous`` (the last snapshot) are reused, not recomputed."""
    recorder = scheduler.recorder
    prefixes, states = _prefix_rows(scheduler)
    known = {r[3]: r[4] for r in previous["task_stream"]} if previous else {}
    stream = []
    for start, stop, worker, key, status in recorder.recent_tasks(STREAM_RECORDS):
        prefix = known.get(key)
        if prefix is None:
            prefix = known[key] = key_prefix(key)
        stream.append([start, stop, worker, key, prefix, status])
    memory = recorder.memory
    samples = [[t, sample] for t, sample in islice(memory, max(0, len(memory) - MEMORY_SAMPLES),
                                                   None)]
    now = time.time()
    return {
        "time": now,
        "scheduler": {"address": scheduler.address, "uptime": now - scheduler.started,
                      "clients": len(scheduler.state.clients),
                      "workers": len(scheduler.state.workers),
                      "tasks": len(scheduler.state.tasks),
                      "tasks_recorded": recorder.recorded},
        "workers": _worker_rows(scheduler),
        "task_states": states,
        "prefixes": prefixes,
        "task_stream": stream,
        "activities": recorder.activities.snapshot(),
        "memory": samples,
    }


def encode(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


class Snapshot:
    """One snapshot plus the response bodies made from it, each built on first request and
    reused until the next snapshot replaces this one."""

    def __init__(self, data: dict[str, Any], cost: float):
        self.data = data
        #: Seconds the snapshot took on the scheduler's loop.
        self.cost = cost
        self._bodies: dict[str, bytes] = {}

    def body(self, name: str, build: Callable[[dict[str, Any]], bytes]) -> bytes:
        cached = self._bodies.get(name)
        if cached is None:
            cached = self._bodies[name] = build(self.data)
        return cached
