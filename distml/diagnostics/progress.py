"""Progress bars for long client-side waits (``compute``, ``fit``, searches), built on tqdm.

A bar is shown only where someone can see it: on an interactive terminal (stderr is a tty), unless
the user turned bars off with ``DISTML_PROGRESS=0`` or ``Config(progress=False)``. Everywhere else
(logs, CI, notebooks piped to files) the bar does nothing, so callers never need to check.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from tqdm import tqdm

from distml.config import Config


def progress_enabled(config: Config | None = None) -> bool:
    """True when progress bars should be drawn: switched on in the configuration (default) and
    stderr is an interactive terminal."""
    config = config or Config.load()
    if not config.progress:
        return False
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class ProgressBar:
    """A progress bar over ``total`` units of work; a context manager.

    ``disable=None`` decides from the environment (see :func:`progress_enabled`); ``True`` or
    ``False`` force it. ``update`` is safe to call from any thread (done callbacks run on the
    client's event loop thread).
    """

    def __init__(self, total: int, desc: str, unit: str = "task", disable: bool | None = None):
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ValueError(f"ProgressBar total must be a non-negative integer, got {total!r}")
        self.total = total
        self.desc = desc
        self.n = 0
        self.disabled = (not progress_enabled()) if disable is None else bool(disable)
        self._lock = threading.Lock()
        self._closed = False
        self._started = time.monotonic()
        self._bar: Any = None
        if not self.disabled:
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True,
                             dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units as done."""
        with self._lock:
            if self._closed:
                return
            self.n += n
            if self._bar is not None:
                self._bar.update(n)

    def set_postfix(self, **fields: Any) -> None:
        """Show extra figures after the bar (e.g. ``best_score=0.93``)."""
        with self._lock:
            if self._bar is not None and not self._closed:
                self._bar.set_postfix(fields, refresh=False)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ProgressBar {self.desc!r} {self.n}/{self.total}>"


def futures_of(obj: Any) -> list[Any]:
    """The distinct futures in ``obj``: a future, a list/tuple/set/dict nesting of them, or a
    persisted collection (an array or table whose graph holds futures)."""
    from distml.client.future import Future

    found: dict[str, Future] = {}

    def walk(item: Any, depth: int) -> None:
        if isinstance(item, Future):
            found.setdefault(item.key, item)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value, depth)
        elif isinstance(item, (list, tuple, set, frozenset)):
            for value in item:
                walk(value, depth)
        elif depth == 0 and hasattr(item, "__distml_graph__"):
            before = len(found)
            walk(dict(item.__distml_graph__()), 1)
            if len(found) == before:
                raise ValueError(f"{type(item).__name__} is not persisted (its graph holds no "
                                 f"futures): pass client.persist(x) or x.persist() to progress")

    walk(obj, 0)
    return list(found.values())


def progress(futures_or_collection: Any, desc: str = "distml", disable: bool | None = None,
             timeout: float | None = None) -> Any:
    """Block until the futures (or a persisted collection's futures) are done, with a progress
    bar on interactive terminals; returns its argument. Failed tasks count as done (the bar shows
    how many failed); their errors are raised when the results are gathered.
    Raises ``distml.TimeoutError`` if ``timeout`` seconds pass first."""
    from distml.client.future import ERROR, wait

    futures = futures_of(futures_or_collection)
    if not futures and not isinstance(futures_or_collection, (list, tuple, set, dict)):
        raise TypeError(f"progress needs futures or a persisted collection, got "
                        f"{type(futures_or_collection).__name__}")
    with ProgressBar(len(futures), desc, disable=disable) as bar:
        failed = [0]

        def finished(future: Any) -> None:
            if future.status == ERROR:
                failed[0] += 1
                bar.set_postfix(failed=failed[0])
            bar.update(1)

        for future in futures:
            future.add_done_callback(finished)
        wait(futures, timeout=timeout)
    return futures_or_collection


class GraphProgress:
    """A bar over the tasks of a submitted graph while the caller waits for its results; a
    context manager. A thread asks the scheduler, a few times a second, which of the tasks are
    still to run (only those are sent again). Nothing runs where no bar would be shown."""

    def __init__(self, client: Any, keys: list[str], desc: str = "compute",
                 interval: float = 0.25, disable: bool | None = None):
        self.client = client
        self.pending = list(keys)
        self.interval = interval
        if disable is None:
            disable = not progress_enabled(client.config)
        self.bar = ProgressBar(len(self.pending), desc, disable=disable)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "GraphProgress":
        if not self.bar.disabled and self.pending:
            self._thread = threading.Thread(target=self._poll, name="distml-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while self.pending and not self._stop.wait(self.interval):
            try:
                still = self.client._sync(self.client._request(
                    {"op": "pending", "keys": self.pending}), self.client.timeout)
            except Exception:  # noqa: BLE001 - a bar must never break the computation
                return
            self.bar.update(len(self.pending) - len(still))
            self.pending = still

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None:
            self.bar.update(self.bar.total - self.bar.n)  # gathered: every task ran
        self.bar.close()
