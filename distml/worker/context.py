"""What a running task knows about where it runs, and the calls that let it wait on other tasks.

Inside a task, :func:`get_client` returns a client of the same cluster (one per worker process,
made from the worker's scheduler address and configuration: secret and TLS included), so a task
can submit tasks and gather their results. A task that waits for tasks it submitted should first
:func:`secede`: its thread leaves the worker's pool, another task starts in its place, and the
scheduler stops counting it against the worker's threads. Without that, tasks waiting on their
children can fill every thread of the cluster and wait forever. :func:`rejoin` takes a thread slot
back (waiting until a running task leaves one); :func:`worker_client` does both around a block.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from distml.client.client import Client
    from distml.worker.runner import TaskRunner
    from distml.worker.server import Worker


class TaskInterrupted(BaseException):
    """Raised inside a running task's thread to stop it: the cluster no longer wants its result
    (cancelled, or released). A ``BaseException`` so that ``except Exception`` does not swallow
    it."""


@dataclass(eq=False)
class TaskContext:
    """The task a thread is running."""

    key: str
    runner: "TaskRunner"
    thread_id: int
    #: The thread left the pool (see :func:`secede`).
    seceded: bool = False
    #: An interruption was requested and may not have been raised yet.
    interrupt_pending: bool = False
    #: The runner is changing its pool for this task: interruptions wait (``interrupt_deferred``).
    shielded: bool = False
    interrupt_deferred: bool = False


_local = threading.local()
_clients: dict[int, "Client"] = {}
_clients_lock = threading.Lock()


def _set_current(context: TaskContext | None) -> None:
    _local.task = context


def current_task() -> TaskContext | None:
    """The task running in this thread, or None outside distml tasks."""
    return getattr(_local, "task", None)


def _require_task(what: str) -> TaskContext:
    context = current_task()
    if context is None:
        raise ValueError(f"{what} can only be called inside a task running on a distml worker")
    return context


def get_worker() -> "Worker":
    """The worker running the current task."""
    worker = _require_task("get_worker()").runner.worker
    if worker is None:
        raise ValueError("this task runner belongs to no worker")
    return worker


def get_client(timeout: float | None = None) -> "Client":
    """A client of the cluster: inside a task, the worker's own (connected on first use, then
    shared by the tasks of this worker); elsewhere, the default client."""
    from distml.client.client import Client, default_client

    context = current_task()
    if context is None:
        client = default_client()
        if client is None:
            raise ValueError("no distml client: create one with distml.Client() first")
        return client
    worker = get_worker()
    with _clients_lock:
        client = _clients.get(id(worker))
        if client is None or client.status not in ("running", "reconnecting"):
            client = Client(worker.scheduler_address, config=worker.config,
                            set_as_default=False,
                            timeout=worker.config.connect_timeout if timeout is None else timeout)
            _clients[id(worker)] = client
        return client


def close_worker_client(worker: "Worker") -> None:
    """Disconnect the client that tasks of ``worker`` used, if any (the worker is closing)."""
    with _clients_lock:
        client = _clients.pop(id(worker), None)
    if client is not None:
        client.close()


def secede() -> None:
    """Give this task's thread back to the worker while the task waits (for tasks it submitted,
    typically): another task starts on the freed slot. Calling it twice does nothing."""
    context = _require_task("secede()")
    context.runner.secede(context)


def rejoin() -> None:
    """Take a thread slot again after :func:`secede`, waiting until a running task leaves one.
    Does nothing if the task did not secede."""
    context = _require_task("rejoin()")
    context.runner.rejoin(context)


def in_task() -> bool:
    return current_task() is not None


@contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True,
                  ) -> Iterator["Client"]:
    """``with worker_client() as client:`` inside a task: the worker's client, with the task's
    thread seceded for the duration of the block (``separate_thread=False`` keeps it)."""
    client = get_client(timeout)
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()

