"""Threads that run tasks, handing events back to the event loop in batches.

A thread pool future per task costs a wake-up of the event loop per task. Here ``nthreads`` threads
take work from one queue, and their events (a task started, a task finished) collect in a list
that the loop drains with a single wake-up however many happened meanwhile; with 10,000 short
tasks that is most of the overhead gone.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable

from distml import graph
from distml.protocol import serialize
from distml.sizeof import sizeof

_STOP = object()


class TaskRunner:
    def __init__(self, nthreads: int, loop: asyncio.AbstractEventLoop,
                 on_events: Callable[[list[tuple]], None], inline_bytes: int):
        """``on_events`` is called in the loop with ``("started", key)`` and
        ``("finished", key, *outcome)`` tuples, in the order they happened."""
        self.codec = serialize.TaskCodec()
        self.inline_bytes = inline_bytes
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop = loop
        self._on_events = on_events
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"distml-task-{i}", daemon=True)
                         for i in range(nthreads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, payload: list, inputs: dict[str, Any]) -> None:
        self._queue.put((key, payload, inputs))

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            key, payload, inputs = item
            if not self._post(("started", key)):
                return
            if not self._post(("finished", key, *self.run(payload, inputs))):
                return

    def _post(self, event: tuple) -> bool:
        with self._lock:
            self._events.append(event)
            wake = len(self._events) == 1
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed while we ran
                return False
        return True

    def _drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        self._on_events(events)

    def run(self, payload: list, inputs: dict[str, Any]) -> tuple:
        """Unpickle the task, run it on its inputs, measure it. Small results are also
        serialized here, off the event loop, so they can travel with the completion message."""
        start = time.perf_counter()
        try:
            func, args, kwargs = self.codec.loads(payload)
            value = graph.execute_task(graph.Task(func, args, kwargs), inputs)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the client
            return ("error", *encode_exception(exc))
        duration = time.perf_counter() - start
        nbytes = sizeof(value)
        inline = None
        if nbytes <= self.inline_bytes:
            try:
                frames = serialize.dumps(value)
            except Exception:  # noqa: BLE001 - it stays on the worker; clients fetch it there
                frames = []
            if len(frames) == 1 and len(frames[0]) <= self.inline_bytes:
                inline = bytes(frames[0])
        return "ok", value, nbytes, duration, inline


def encode_exception(exc: BaseException) -> tuple[list | None, list, str]:
    """(serialized exception, serialized traceback text, one-line text) for a failed task."""
    import traceback as tb

    text = f"{type(exc).__name__}: {exc}"
    trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = [bytes(f) for f in serialize.dumps(exc)]
    except Exception:  # noqa: BLE001 - the client gets the text and traceback instead
        blob = None
    return blob, [bytes(f) for f in serialize.dumps(trace)], text
