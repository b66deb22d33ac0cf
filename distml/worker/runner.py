"""Threads that run tasks, handing events back to the event loop in batches.

A thread pool future per task costs a wake-up of the event loop per task. Here ``nthreads`` threads
take work from one queue, and their events (a task started, a task finished) collect in a list
that the loop drains with a single wake-up however many happened meanwhile; with 10,000 short
tasks that is most of the overhead gone.

A task may leave the pool while it waits (:meth:`TaskRunner.secede`): a new thread takes its
place, and the old one ends with its task, unless the task rejoins, in which case it waits until a
pool thread finishes its current task and leaves instead. A task whose result is no longer wanted
is interrupted: :class:`TaskInterrupted` is raised in its thread at the next Python instruction
(code inside a C extension runs on until it returns to Python).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import queue
import threading
import time
from typing import Any, Callable

from distml import graph
from distml.protocol import serialize
from distml.sizeof import sizeof
from distml.worker.context import TaskContext, TaskInterrupted, _set_current

_STOP = object()
_INTERRUPTED = ("interrupted",)

#: CPython's PyThreadState_SetAsyncExc, to raise an exception in another thread (with an
#: exception class) or withdraw one not yet raised (with NULL).
_raise_in_thread = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_withdraw_from_thread = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


class TaskRunner:
    def __init__(self, nthreads: int, loop: asyncio.AbstractEventLoop,
                 on_events: Callable[[list[tuple]], None], inline_bytes: int,
                 worker: Any = None):
        """``on_events`` is called in the loop with ``("started", key)``,
        ``("seceded", key)``, ``("rejoined", key)`` and ``("finished", key, *outcome)`` tuples,
        in the order they happened. ``worker`` is what tasks see as their worker."""
        self.codec = serialize.TaskCodec()
        self.inline_bytes = inline_bytes
        self.nthreads = nthreads
        self.worker = worker
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop = loop
        self._on_events = on_events
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        #: key -> the context of the thread running it; keys waiting in the queue, and those
        #: of them to skip when they come up.
        self._running: dict[str, TaskContext] = {}
        self._queued: set[str] = set()
        self._skip: set[str] = set()
        self._interrupt_lock = threading.Lock()
        self._names = itertools.count()
        for _ in range(nthreads):
            self._start_thread()

    def _start_thread(self) -> None:
        threading.Thread(target=self._work, name=f"distml-task-{next(self._names)}",
                         daemon=True).start()

    def running(self) -> int:
        """Tasks in a thread right now (the state machine also counts those queued ahead)."""
        with self._interrupt_lock:
            return len(self._running)

    def submit(self, key: str, payload: list, inputs: dict[str, Any]) -> None:
        with self._interrupt_lock:
            self._queued.add(key)
        self._queue.put((key, payload, inputs))

    def stop(self) -> None:
        for _ in range(self.nthreads):
            self._queue.put(_STOP)

    def _work(self) -> None:
        held: list[tuple] = []  # the last task's "finished", posted with the next "started"
        while True:
            item = self._next(held)
            if item is _STOP or isinstance(item, threading.Event):
                if held:
                    self._post(*held)
                if item is not _STOP:  # a rejoining task takes this thread's place
                    item.set()
                return
            key, payload, inputs = item
            with self._interrupt_lock:
                self._queued.discard(key)
                skip = key in self._skip
                self._skip.discard(key)
            if skip:
                held.append(("finished", key, *_INTERRUPTED))
                continue
            if not self._post(*held, ("started", key)):
                return
            context = TaskContext(key, self, threading.get_ident())
            outcome = self._run_interruptible(context, payload, inputs)
            held = [("finished", key, *outcome)]
            if context.seceded:  # a new thread took this one's place in the pool
                self._post(*held)
                return

    def _next(self, held: list[tuple]) -> Any:
        """The next item of the queue. Events ``held`` back (a task just finished) go to the
        loop now if the queue is empty; if a task waits, they go with its "started", so that a
        busy worker wakes its loop and messages the scheduler once per task, not twice.
        ``held`` is emptied here if posted here; otherwise the caller posts it."""
        if held:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                self._post(*held)
                held.clear()
        return self._queue.get()

    # ------------------------------------------------------------------ tasks that wait
    def secede(self, context: TaskContext) -> None:
        """The task of ``context`` leaves the pool; a new thread takes its place."""
        if context.seceded:
            return
        self._shield(context, True)
        try:
            context.seceded = True
            self._start_thread()
            self._post(("seceded", context.key))
        finally:
            self._shield(context, False)

    def rejoin(self, context: TaskContext) -> None:
        """The seceded task of ``context`` comes back: wait until a pool thread leaves."""
        if not context.seceded:
            return
        self._shield(context, True)
        try:
            slot = threading.Event()
            self._post(("rejoined", context.key))
            self._queue.put(slot)
            slot.wait()
            context.seceded = False
        finally:
            self._shield(context, False)

    def _shield(self, context: TaskContext, on: bool) -> None:
        """Hold interruptions back while the pool's bookkeeping changes (a thread lost halfway
        through would shrink the pool for good); on leaving, raise one that came meanwhile."""
        with self._interrupt_lock:
            context.shielded = on
            deferred = not on and context.interrupt_deferred
            context.interrupt_deferred = False
        if deferred:
            raise TaskInterrupted()

    # ------------------------------------------------------------------ interruption
    def interrupt(self, key: str) -> None:
        """Stop ``key``: raise :class:`TaskInterrupted` in its thread if it runs, or skip it
        when its turn comes if it waits in the queue. A key that has finished (or is between
        the two) is left alone: a skip kept for it would wrongly stop its next run."""
        with self._interrupt_lock:
            context = self._running.get(key)
            if context is None:
                if key in self._queued:
                    self._skip.add(key)
            elif context.interrupt_pending or context.interrupt_deferred:
                pass
            elif context.shielded:
                context.interrupt_deferred = True
            else:
                context.interrupt_pending = True
                _raise_in_thread(context.thread_id, TaskInterrupted)

    def _run_interruptible(self, context: TaskContext, payload: list,
                           inputs: dict[str, Any]) -> tuple:
        """Run the task so that an interruption, wherever it lands (in the task, or in this
        bookkeeping just after it), ends up as the ``interrupted`` outcome and never escapes
        into the thread's loop."""
        _set_current(context)
        try:
            try:
                with self._interrupt_lock:
                    self._running[context.key] = context
                outcome = self.run(payload, inputs)
            except TaskInterrupted:
                context.interrupt_pending = False
                outcome = _INTERRUPTED
        except TaskInterrupted:  # landed inside the handler above
            context.interrupt_pending = False
            outcome = _INTERRUPTED
        while True:
            try:
                with self._interrupt_lock:
                    self._running.pop(context.key, None)
                    if context.interrupt_pending:  # requested, not raised yet: withdraw it
                        _withdraw_from_thread(context.thread_id, None)
                        context.interrupt_pending = False
                break
            except TaskInterrupted:  # raised at last, here: the task had finished anyway
                context.interrupt_pending = False
        _set_current(None)
        return outcome

    def _post(self, *events: tuple) -> bool:
        with self._lock:
            wake = not self._events
            self._events.extend(events)
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
        except TaskInterrupted:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the client
            return ("error", *encode_exception(exc))
        duration = time.perf_counter() - start
        nbytes = sizeof(value)
        inline = None
        if nbytes <= self.inline_bytes:
            try:
                frames = serialize.dumps(value, out_of_band=False)  # small arrays too: one frame
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
