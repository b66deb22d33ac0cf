"""Futures: handles on results that live on the cluster.

A :class:`Future` holds a key and counts as a reference: when the last future on a key is
garbage-collected, the client tells the scheduler, which releases the result. The shared state of
all futures on one key is a :class:`FutureState`, updated from the client's event loop thread and
waited on from user threads.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from distml.errors import (CancelledError, GraphError, KeyLostError, NoWorkersError,
                           RemoteTaskError, TimeoutError, WorkerDiedError)
from distml.protocol import serialize

if TYPE_CHECKING:
    from distml.client.client import Client

PENDING = "pending"
FINISHED = "finished"
ERROR = "error"
CANCELLED = "cancelled"
LOST = "lost"


class RemoteTraceback(Exception):
    """Carries a task's traceback from the worker, chained as the cause of its exception."""

    def __str__(self) -> str:
        return "\n\n" + self.args[0]


class FutureState:
    """Status of one key as the client knows it; shared by every Future on that key."""

    __slots__ = ("key", "status", "done", "_event", "exception", "traceback", "text", "erred_key",
                 "kind",
                 "workers", "value", "callbacks", "_lock")

    def __init__(self, key: str):
        self.key = key
        self.status = PENDING
        self.done = False
        self._event: threading.Event | None = None  # made only when someone blocks on it
        self.exception: Any = None
        self.traceback: Any = None
        self.text = ""
        self.erred_key: str | None = None
        self.kind = "task"
        self.workers: list[str] = []
        #: The pickled result, when it was small enough to come with the completion message.
        self.value: bytes | None = None
        self.callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def finish(self, status: str, **fields: Any) -> None:
        with self._lock:
            self.status = status
            for name, value in fields.items():
                setattr(self, name, value)
            self.done = True
            if self._event is not None:
                self._event.set()
            callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()

    def reset(self) -> None:
        """The result was lost and is being recomputed."""
        with self._lock:
            self.status = PENDING
            self.value = None
            self.done = False
            if self._event is not None:
                self._event.clear()

    def on_done(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self.done:
                self.callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None) -> None:
        if self.done:
            return
        with self._lock:
            if self.done:
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            raise TimeoutError(f"key {self.key!r} did not finish within {timeout} s")

    def error(self) -> BaseException:
        """The exception to raise in the client for a failed or lost key."""
        if self.status == CANCELLED:
            return CancelledError(f"key {self.key!r} was cancelled")
        if self.status == LOST:
            return KeyLostError(self.text)
        exc: BaseException | None = None
        if self.exception is not None:
            try:
                exc = serialize.loads(self.exception)
            except Exception:  # noqa: BLE001 - the exception type may not exist here
                exc = None
        if not isinstance(exc, BaseException):
            where = "" if self.erred_key in (None, self.key) else f" (in {self.erred_key!r})"
            kind = {"worker-died": WorkerDiedError, "no-workers": NoWorkersError,
                    "graph": GraphError}.get(self.kind, RemoteTaskError)
            exc = kind(f"task {self.key!r} failed{where}: {self.text}")
        trace = self.remote_traceback()
        if trace:
            exc.__cause__ = RemoteTraceback(trace)
        return exc

    def remote_traceback(self) -> str:
        if self.traceback is None:
            return ""
        try:
            return str(serialize.loads(self.traceback))
        except Exception:  # noqa: BLE001
            return ""


class Future:
    """A result being computed, or held, on the cluster."""

    __slots__ = ("key", "client", "_state", "__weakref__")

    def __init__(self, key: str, client: "Client"):
        self.key = key
        self.client = client
        self._state = client._acquire(key)

    @property
    def status(self) -> str:
        return self._state.status

    def done(self) -> bool:
        return self._state.done

    def result(self, timeout: float | None = None) -> Any:
        """The value, fetched from the worker holding it; re-raises the task's exception."""
        return self.client.gather(self, timeout=timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._state.wait(timeout)
        if self._state.status == FINISHED:
            return None
        return self._state.error()

    def traceback(self, timeout: float | None = None) -> str | None:
        """The remote traceback text of a failed task, or None."""
        self._state.wait(timeout)
        return self._state.remote_traceback() or None

    def add_done_callback(self, fn: Callable[["Future"], Any]) -> None:
        """Call ``fn(self)`` when the future finishes (in the client's event loop thread)."""
        self._state.on_done(lambda: fn(self))

    def cancel(self) -> None:
        self.client.cancel([self])

    def retry(self) -> None:
        self.client.retry([self])

    def __del__(self) -> None:
        try:
            self.client._release(self.key)
        except Exception:  # noqa: BLE001 - interpreter shutdown, loop already gone
            pass

    def __repr__(self) -> str:
        return f"<Future {self.key!r} {self.status}>"

    def __reduce__(self):
        raise TypeError("a distml Future cannot be pickled; pass it as an argument to submit "
                        "(it is replaced by its value) or send its key")


def wait(futures: Iterable[Future], timeout: float | None = None,
         return_when: str = "ALL_COMPLETED") -> tuple[set[Future], set[Future]]:
    """Block until all (or the first, with ``return_when="FIRST_COMPLETED"``) futures are done.

    Returns ``(done, not_done)``; raises distml's ``TimeoutError`` if ``timeout`` passes first.
    """
    futures = list(futures)
    if return_when not in ("ALL_COMPLETED", "FIRST_COMPLETED"):
        raise ValueError(f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, not "
                         f"{return_when!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    if return_when == "FIRST_COMPLETED" and futures:
        signal = threading.Event()
        for f in futures:
            f._state.on_done(signal.set)
        if not signal.wait(timeout):
            raise TimeoutError(f"no future finished within {timeout} s")
    else:
        for f in futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            f._state.wait(left)
    done = {f for f in futures if f.done()}
    return done, set(futures) - done


class as_completed:  # noqa: N801 - named like the function users know
    """Iterate over futures in the order they finish. ``add(future)`` extends the set."""

    def __init__(self, futures: Iterable[Future] = (), with_results: bool = False,
                 timeout: float | None = None):
        self._queue: queue.Queue[Future] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self.with_results = with_results
        self.timeout = timeout
        for f in futures:
            self.add(f)

    def add(self, future: Future) -> None:
        with self._lock:
            self._pending += 1
        future._state.on_done(lambda: self._queue.put(future))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        with self._lock:
            if self._pending == 0:
                raise StopIteration
            self._pending -= 1
        try:
            future = self._queue.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no future finished within {self.timeout} s") from None
        if self.with_results:
            return future, future.result()
        return future
