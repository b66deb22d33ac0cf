"""One asyncio event loop per process, in a daemon thread, that clients and local clusters share.

User code is synchronous; the runtime is asynchronous. ``LoopThread.run(coro)`` bridges the two.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_shared: "LoopThread | None" = None


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name="distml-loop",
                                       daemon=True)
        self.thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result from a non-loop thread."""
        if self.in_loop_thread():
            raise RuntimeError("cannot block on the distml event loop from inside it")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule ``callback(*args)`` on the loop, from any thread, in FIFO order (even from
        the loop thread itself, so that messages are never reordered)."""
        self.loop.call_soon_threadsafe(callback, *args)


def shared_loop() -> LoopThread:
    """The process's loop thread, started on first use."""
    global _shared
    with _lock:
        if _shared is None or not _shared.thread.is_alive():
            _shared = LoopThread()
        return _shared
