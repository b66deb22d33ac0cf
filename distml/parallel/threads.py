"""How many threads a cluster has, as the joblib backend needs to know for every ``Parallel``
call (``n_jobs=-1`` means all of them).

Asking the scheduler costs a round trip before the first batch can leave, and scikit-learn asks
several times per fit, each ``parallel_config`` block with a new backend. So the count is
remembered per client: used as it is for :data:`FRESH_SECONDS`; after that, still used at once
for up to :data:`STALE_SECONDS` while a background thread asks again (the next call sees the new
count); older than that, or never seen, the caller asks and waits.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds a count is used without asking again.
FRESH_SECONDS = 1.0
#: Seconds a count is still used while it is being asked again in the background.
STALE_SECONDS = 30.0

_lock = threading.Lock()
#: client -> (time.monotonic() when seen, total threads)
_seen: "weakref.WeakKeyDictionary[Any, tuple[float, int]]" = weakref.WeakKeyDictionary()
#: clients being asked in the background
_asking: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _ask(client: Any) -> int:
    count = sum(client.nthreads().values())
    if count:
        with _lock:
            _seen[client] = (time.monotonic(), count)
    return count


def _ask_in_background(client: Any) -> None:
    with _lock:
        if client in _asking:
            return
        _asking.add(client)

    def ask() -> None:
        try:
            _ask(client)
        except Exception as exc:  # noqa: BLE001 - the next call asks and waits, and reports
            logger.debug("could not refresh the thread count of %s: %s",
                         client.scheduler_address, exc)
        finally:
            with _lock:
                _asking.discard(client)

    threading.Thread(target=ask, name="distml-joblib-threads", daemon=True).start()


def total_threads(client: Any, wait_seconds: float) -> int:
    """The threads of ``client``'s cluster, waiting up to ``wait_seconds`` for a first worker
    when no recent count is known. Raises distml's ``TimeoutError`` if none joins."""
    from distml.errors import TimeoutError

    with _lock:
        seen_at, count = _seen.get(client, (0.0, 0))
    age = time.monotonic() - seen_at
    if count and age < STALE_SECONDS:
        if age >= FRESH_SECONDS:
            _ask_in_background(client)
        return count
    deadline = time.monotonic() + wait_seconds
    while True:
        count = _ask(client)
        if count:
            return count
        if time.monotonic() > deadline:
            raise TimeoutError(f"joblib backend 'distml': no worker joined the cluster at "
                               f"{client.scheduler_address} within {wait_seconds} s")
        time.sleep(0.05)
