"""What the scheduler knows of tasks, workers and clients: plain records, and the task states."""

from __future__ import annotations

from typing import Any

RELEASED = "released"
WAITING = "waiting"
QUEUED = "queued"
PROCESSING = "processing"
MEMORY = "memory"
ERRED = "erred"
FORGOTTEN = "forgotten"

#: Cost assumed per task on top of its measured run time (messaging, bookkeeping), in seconds.
TASK_OVERHEAD = 1e-4

Outbox = dict[str, list[dict[str, Any]]]


class TaskState:
    """What the scheduler knows of one key."""

    __slots__ = (
        "key", "state", "payload", "prefix", "priority", "dependencies", "dependents",
        "waiting_on", "waiters", "who_wants", "who_has", "processing_on", "nbytes",
        "exception", "traceback", "exception_text", "erred_key", "suspicious", "retries",
        "stealing_to", "started", "erred_kind", "delivered",
    )

    def __init__(self, key: str, payload: Any, prefix: str, priority: tuple, retries: int = 0):
        self.key = key
        self.state = RELEASED
        #: Opaque serialized task (list of byte frames); ``None`` for scattered data.
        self.payload = payload
        self.prefix = prefix
        self.priority = priority
        self.dependencies: set[TaskState] = set()
        self.dependents: set[TaskState] = set()
        #: Dependencies not yet in memory, while this task is waiting.
        self.waiting_on: set[TaskState] = set()
        #: Dependents that still need this task's result.
        self.waiters: set[TaskState] = set()
        self.who_wants: set[ClientState] = set()
        #: Wanting clients that were sent the (small) result itself and so hold it.
        self.delivered: set[ClientState] = set()
        self.who_has: set[WorkerState] = set()
        self.processing_on: WorkerState | None = None
        self.nbytes = 0
        self.exception: Any = None
        self.traceback: Any = None
        self.exception_text = ""
        #: The key whose failure made this task fail (itself, or a dependency).
        self.erred_key: str | None = None
        #: Why it failed: "task" (it raised), "worker-died", "lost" (data), "graph".
        self.erred_kind = "task"
        #: How many times this task was processing on a worker that died.
        self.suspicious = 0
        self.retries = retries
        self.stealing_to: WorkerState | None = None
        #: The worker said it began running this task (not merely queued it).
        self.started = False

    def __repr__(self) -> str:
        return f"<Task {self.key!r} {self.state}>"


class WorkerState:
    """What the scheduler knows of one worker."""

    __slots__ = ("address", "name", "nthreads", "memory_limit", "processing", "occupancy",
                 "has_what", "nbytes", "paused", "metrics", "long_running")

    def __init__(self, address: str, name: str, nthreads: int, memory_limit: int):
        self.address = address
        self.name = name
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        #: Task -> estimated duration, for every task sent to this worker and not yet back.
        self.processing: dict[TaskState, float] = {}
        #: Processing tasks that gave their thread back while they wait (they run, but do not
        #: occupy a thread: see ``SchedulerState.task_seceded``).
        self.long_running: set[TaskState] = set()
        self.occupancy = 0.0
        self.has_what: set[TaskState] = set()
        self.nbytes = 0
        self.paused = False
        #: Latest heartbeat figures: resident memory, bytes in memory and spilled, tasks running.
        self.metrics: dict[str, int] = {}

    def load(self) -> float:
        return self.occupancy / self.nthreads

    def busy_threads(self) -> int:
        """Tasks sent here that hold (or wait for) a thread."""
        return len(self.processing) - len(self.long_running)

    def __repr__(self) -> str:
        return f"<Worker {self.address} processing={len(self.processing)}>"


class ClientState:
    __slots__ = ("id", "wants")

    def __init__(self, client_id: str):
        self.id = client_id
        self.wants: set[TaskState] = set()

    def __repr__(self) -> str:
        return f"<Client {self.id}>"


def key_prefix(key: str) -> str:
    """The task kind used for duration estimates: the key up to its last ``-`` (``inc-3f2a``)."""
    if key.startswith("("):
        key = key[1:].split(",", 1)[0].strip("'\"")
    return key.rsplit("-", 1)[0]
