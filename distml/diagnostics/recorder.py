"""What the scheduler remembers for the dashboard and reports, beyond what scheduling needs.

Fed by the scheduler's I/O layer from messages it already receives (a worker's ``task-finished``
carries the run time; the arrival time closes the interval), so recording costs one tuple
appended to a bounded deque per task. Workers' memory is sampled a few times a second into a
bounded history. Everything here is plain data (no user objects) and bounded in size.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice
from typing import Any, Iterable

from distml.diagnostics.activity import ActivityBoard

#: Worker memory samples kept (at ``MEMORY_SAMPLE_SECONDS`` apart: 30 minutes).
MEMORY_HISTORY = 3600
MEMORY_SAMPLE_SECONDS = 0.5

OK = "ok"
ERROR = "error"


class Recorder:
    """Task timings (a bounded stream), worker memory over time, and the activity board."""

    def __init__(self, task_stream_length: int = 100_000):
        #: (start, stop, worker, key, status) per finished task, oldest first.
        self.task_stream: deque[tuple[float, float, str, str, str]] = deque(
            maxlen=max(1, task_stream_length))
        #: (time, {worker: [rss, managed, spilled, executing]}) samples, oldest first.
        self.memory: deque[tuple[float, dict[str, list[int]]]] = deque(maxlen=MEMORY_HISTORY)
        self.activities = ActivityBoard()
        #: Tasks recorded since start (the stream may have dropped the oldest).
        self.recorded = 0
        #: key -> when a worker said it began running it, until it finishes or fails (a failed
        #: task's message carries no run time). Bounded: the oldest entries go first.
        self._running_since: dict[str, float] = {}
        self._running_since_limit = max(1024, task_stream_length)
        self.started = time.time()

    # ------------------------------------------------------------------ recording
    def task_started(self, keys: list[str], now: float) -> None:
        started = self._running_since
        for key in keys:
            if isinstance(key, str):
                started[key] = now
        if len(started) > self._running_since_limit:  # never reported back (stolen, lost)
            for key in list(islice(started, len(started) - self._running_since_limit)):
                del started[key]

    def task_finished(self, worker: str, key: str, duration: float, now: float) -> None:
        self._running_since.pop(key, None)
        self.task_stream.append((now - max(0.0, float(duration)), now, worker, key, OK))
        self.recorded += 1

    def task_erred(self, worker: str, key: str, now: float) -> None:
        started = self._running_since.pop(key, now)
        self.task_stream.append((min(started, now), now, worker, key, ERROR))
        self.recorded += 1

    def sample_memory(self, workers: Iterable[Any], now: float) -> None:
        """One sample of every worker's latest heartbeat figures (``WorkerState``s)."""
        self.memory.append((now, {
            ws.address: [int(ws.metrics.get("rss", 0)), int(ws.metrics.get("managed", 0)),
                         int(ws.metrics.get("spilled", 0)), int(ws.metrics.get("executing", 0))]
            for ws in workers}))

    # ------------------------------------------------------------------ reading
    def recent_tasks(self, limit: int) -> list[tuple[float, float, str, str, str]]:
        """The newest ``limit`` task records, oldest first (without copying the whole deque)."""
        n = len(self.task_stream)
        if n <= limit:
            return list(self.task_stream)
        newest = list(islice(reversed(self.task_stream), limit))
        newest.reverse()
        return newest

    def tasks_since(self, since: float) -> list[tuple[float, float, str, str, str]]:
        """Task records that stopped at or after ``since``, oldest first."""
        return _newer_than(self.task_stream, since, 1)

    def memory_since(self, since: float) -> list[tuple[float, dict[str, list[int]]]]:
        """Memory samples taken at or after ``since``, oldest first."""
        return _newer_than(self.memory, since, 0)

    def history(self, since: float) -> dict[str, Any]:
        """Plain data for a performance report covering ``since`` until now."""
        tasks = self.tasks_since(since)
        # complete unless the deque dropped records that fell inside the window
        complete = len(tasks) < len(self.task_stream) or self.recorded == len(self.task_stream)
        return {
            "since": since,
            "now": time.time(),
            "task_stream": [list(r) for r in tasks],
            "task_stream_complete": complete,
            "memory": [[t, {w: list(v) for w, v in sample.items()}]
                       for t, sample in self.memory_since(since)],
        }


def _newer_than(records: deque, since: float, field: int) -> list:
    """The records of a time-ordered deque whose ``field`` is at least ``since``, oldest first,
    read from the new end so that a recent window costs only its own length."""
    out = []
    for record in reversed(records):
        if record[field] < since:
            break
        out.append(record)
    out.reverse()
    return out
