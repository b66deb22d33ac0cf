"""Where joblib's completion callbacks run: off the client's event loop (retrieving a large
result blocks on a fetch, and the callback dispatches the next batch, running the caller's
generator), one finished batch at a time per ``Parallel`` call.

Each call gets a :class:`CallbackChannel`; a thread serves it until the call ends, then waits
for the next call's channel. Keeping a few such threads spares every ``Parallel`` call the start
of a thread (``Thread.start`` waits until the new thread runs: on a loaded machine, a
scheduling delay before the first batch). Completions that arrive after their call ended go to
a channel nobody reads any more, so they can never reach another call.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

logger = logging.getLogger(__name__)

#: Idle threads kept for later calls (more run at once when calls overlap).
MAX_IDLE = 4

_lock = threading.Lock()
_idle: list["_CallbackThread"] = []


class CallbackChannel:
    """The completions of one ``Parallel`` call, delivered in the order they arrive."""

    def __init__(self) -> None:
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        _take_thread().serve(self)

    def put(self, callback: Callable[[Any], Any], future: Any) -> None:
        """Run ``callback(future)`` on the channel's thread (safe from any thread)."""
        self._items.put((callback, future))

    def close(self) -> None:
        """The call ended: the thread finishes what was put before and moves on."""
        self._items.put(None)

    def _deliver(self) -> None:
        while True:
            item = self._items.get()
            if item is None:
                return
            callback, future = item
            del item
            try:
                callback(future)
            except Exception:  # noqa: BLE001 - joblib records outcomes itself; keep delivering
                logger.exception("joblib callback failed")
            del callback, future  # let the batch's future go now, not at the next completion


class _CallbackThread:
    def __init__(self) -> None:
        self._channels: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="distml-joblib-callbacks", daemon=True).start()

    def serve(self, channel: CallbackChannel) -> None:
        self._channels.put(channel)

    def _run(self) -> None:
        while True:
            channel = self._channels.get()
            channel._deliver()  # noqa: SLF001 - the channel's own loop, run on this thread
            del channel
            with _lock:
                if len(_idle) >= MAX_IDLE:
                    return
                _idle.append(self)


def _take_thread() -> _CallbackThread:
    with _lock:
        if _idle:
            return _idle.pop()
    return _CallbackThread()
