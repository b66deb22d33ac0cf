"""The worker's state machine: events in, instructions out.

A plain class with no sockets, threads or clock. It decides which task runs next (by priority,
at most ``nthreads`` at once), which inputs to fetch from which peer, and what to tell the
scheduler. The I/O layer in :mod:`distml.worker.server` carries the instructions out and feeds the
outcomes back in as events. Values themselves live in the I/O layer; this class only knows keys
and sizes.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

WAITING = "waiting"      # some inputs are still being fetched
READY = "ready"          # all inputs here, waiting for a thread
EXECUTING = "executing"  # running in a thread
CANCELLED = "cancelled"  # running, but the scheduler no longer wants the result


@dataclass
class Execute:
    """Run ``key`` in a thread."""

    key: str


@dataclass
class Fetch:
    """Ask the peer at ``address`` for ``keys``."""

    address: str
    keys: list[str]


@dataclass
class SendToScheduler:
    msg: dict[str, Any]


@dataclass
class Interrupt:
    """Stop the running task ``key`` (its result is no longer wanted)."""

    key: str


@dataclass
class Forget:
    """Drop the value of ``key`` from memory."""

    key: str


Instruction = Execute | Fetch | SendToScheduler | Forget | Interrupt


@dataclass(eq=False)
class WorkerTask:
    key: str
    payload: Any
    priority: tuple
    dependencies: list[str]
    state: str = WAITING
    missing: set[str] = field(default_factory=set)
    #: A thread took it up (handed to the threads, it may still wait behind another task).
    started: bool = False


class WorkerStateMachine:
    """Tasks, inputs and threads of one worker."""

    def __init__(self, nthreads: int, address: str = "", max_concurrent_fetches: int = 4,
                 prefetch: int = 0, max_fetch_bytes: int = 64 * 2**20):
        self.nthreads = nthreads
        #: Tasks handed to the threads beyond one each, so a thread that finishes one starts the
        #: next without waiting for the event loop.
        self.prefetch = prefetch
        self.address = address
        self.max_concurrent_fetches = max_concurrent_fetches
        #: Most bytes asked of one peer in one request (at least one key).
        self.max_fetch_bytes = max_fetch_bytes
        self.tasks: dict[str, WorkerTask] = {}
        #: key -> nbytes for every value held.
        self.in_memory: dict[str, int] = {}
        self.executing: set[str] = set()
        #: Running tasks that gave their thread back while they wait (see :meth:`secede`).
        self.seceded: set[str] = set()
        self._ready: list[tuple[tuple, int, str]] = []
        self._counter = itertools.count()
        #: input key -> peers that may hold it, not yet tried.
        self._holders: dict[str, list[str]] = {}
        #: input key -> peers already tried and failed.
        self._tried: dict[str, list[str]] = {}
        #: input keys being fetched, and from where.
        self._in_flight: dict[str, str] = {}
        self._peers_busy: set[str] = set()
        #: input key -> tasks here that need it.
        self._needed_by: dict[str, set[str]] = {}
        #: input key -> its size, as the scheduler said, to bound the bytes of one fetch.
        self._sizes: dict[str, int] = {}
        self.paused = False
        #: Results the scheduler freed while a task here still needed them as inputs (it
        #: frees a copy it did not know of when that result was lost with another worker and
        #: is being recomputed): kept for those tasks, then forgotten.
        self._orphans: set[str] = set()
        #: key -> how many tasks here have it as an input.
        self._input_refs: dict[str, int] = {}
        #: key -> the put (a client's scatter) of its copy here that the scheduler has not yet
        #: confirmed. A free arriving meanwhile was decided before the scheduler knew of this
        #: copy (the client released the key just before scattering it again) and must not
        #: drop it; a confirmation of an earlier put of the same key does not count.
        self._unconfirmed: dict[str, str] = {}

    # ------------------------------------------------------------------ scheduler events
    def compute(self, key: str, payload: Any, priority: Iterable, deps: dict[str, list[str]],
                nbytes: dict[str, int] | None = None) -> list[Instruction]:
        """Run ``key`` once its inputs ``deps`` (key -> peers holding it; ``nbytes``: their
        sizes) are here."""
        if nbytes:
            self._sizes.update(nbytes)
        if key in self.in_memory:
            self._orphans.discard(key)
            return [SendToScheduler({"op": "task-finished", "key": key,
                                     "nbytes": self.in_memory[key], "duration": 0.0})]
        if key in self.tasks:
            task = self.tasks[key]
            if task.state == CANCELLED:  # wanted again while its old run is still going
                task.state = EXECUTING
            return []
        task = WorkerTask(key, payload, tuple(priority), list(deps))
        self.tasks[key] = task
        for dep_key in task.dependencies:
            self._input_refs[dep_key] = self._input_refs.get(dep_key, 0) + 1
        for dep_key, holders in deps.items():
            if dep_key in self.in_memory:
                continue
            task.missing.add(dep_key)
            self._needed_by.setdefault(dep_key, set()).add(key)
            known = self._holders.setdefault(dep_key, [])
            tried = self._tried.get(dep_key, ())
            for address in holders:
                if address not in known and address not in tried and address != self.address:
                    known.append(address)
        if task.missing:
            task.state = WAITING
            return self._start_fetches()
        self._make_ready(task)
        return self._start_executions()

    def free(self, keys: Iterable[str]) -> list[Instruction]:
        """The scheduler no longer needs ``keys`` here: drop data, queued and running work."""
        out: list[Instruction] = []
        for key in keys:
            task = self.tasks.get(key)
            if task is not None:
                if task.state == EXECUTING:
                    task.state = CANCELLED
                    out.append(Interrupt(key))
                elif task.state != CANCELLED:
                    out.extend(self._drop_task(task))
            if key in self.in_memory and key not in self._unconfirmed:
                if self._needed_here(key):
                    self._orphans.add(key)
                else:
                    del self.in_memory[key]
                    out.append(Forget(key))
        out.extend(self._start_executions())
        return out

    def confirm(self, keys: Iterable[str], put: str) -> list[Instruction]:
        """The scheduler recorded the ``keys`` of the scatter ``put`` as held here: frees from
        now on apply to them (unless a later put of a key came meanwhile)."""
        for key in keys:
            if self._unconfirmed.get(key) == put:
                del self._unconfirmed[key]
        return []

    def steal(self, key: str) -> list[Instruction]:
        """The scheduler wants to move ``key`` elsewhere: agree only if it has not started. A
        task handed to the threads ahead of time that no thread has taken up yet can still go:
        the threads skip it (and should one take it up meanwhile, it is interrupted)."""
        task = self.tasks.get(key)
        ok = task is not None and (task.state in (WAITING, READY) or (
            task.state == EXECUTING and not task.started and key not in self.seceded))
        out: list[Instruction] = [SendToScheduler({"op": "steal-response", "key": key,
                                                   "ok": ok})]
        if ok and task.state == EXECUTING:
            task.state = CANCELLED
            out.append(Interrupt(key))
        elif ok:
            out.extend(self._drop_task(task))
        return out

    def tasks_started(self, keys: Iterable[str]) -> list[Instruction]:
        """Threads took up ``keys``: from now on they are not given up to a steal."""
        for key in keys:
            task = self.tasks.get(key)
            if task is not None and task.state == EXECUTING:
                task.started = True
        return []

    def forget_work(self) -> list[Instruction]:
        """The scheduler is gone and with it every assignment: drop queued work and fetches,
        keep the results (running tasks finish, but their results are not kept)."""
        for task in self.tasks.values():
            if task.state == EXECUTING:
                task.state = CANCELLED
        self.tasks = {k: t for k, t in self.tasks.items() if t.state == CANCELLED}
        self._input_refs = {}
        for task in self.tasks.values():
            for dep_key in task.dependencies:
                self._input_refs[dep_key] = self._input_refs.get(dep_key, 0) + 1
        self._ready.clear()
        self._holders.clear()
        self._tried.clear()
        self._needed_by.clear()
        self._unconfirmed.clear()  # the next scheduler learns of every key here on joining
        return []

    def set_paused(self, paused: bool) -> list[Instruction]:
        self.paused = paused
        return self._start_executions()

    # ------------------------------------------------------------------ tasks that wait
    def secede(self, key: str) -> list[Instruction]:
        """The task running ``key`` gave its thread back while it waits (typically on tasks it
        submitted): its slot goes to the next ready task, and the scheduler stops counting it
        against this worker's threads. Without this, a task gathering its children on a
        one-thread worker would wait for work that can never start."""
        if key not in self.executing:
            return []
        self.executing.discard(key)
        self.seceded.add(key)
        out: list[Instruction] = []
        task = self.tasks.get(key)
        if task is not None and task.state == EXECUTING:
            out.append(SendToScheduler({"op": "secede", "key": key}))
        out.extend(self._start_executions())
        return out

    def rejoin(self, key: str) -> list[Instruction]:
        """The seceded task ``key`` takes a thread slot again (its thread waits in the I/O layer
        until a running task leaves one)."""
        if key not in self.seceded:
            return []
        self.seceded.discard(key)
        self.executing.add(key)
        task = self.tasks.get(key)
        if task is not None and task.state == EXECUTING:
            return [SendToScheduler({"op": "rejoin", "key": key})]
        return []

    # ------------------------------------------------------------------ execution outcomes
    def task_done(self, key: str, nbytes: int, duration: float, inline: bytes | None = None,
                  ) -> list[Instruction]:
        """A thread finished ``key``; the I/O layer has stored the value. ``inline`` is the
        pickled value when it is small enough to travel with the message."""
        task = self.tasks.pop(key, None)
        self.executing.discard(key)
        self.seceded.discard(key)
        out: list[Instruction] = []
        if task is None or task.state == CANCELLED:
            if key not in self.in_memory:  # (restored meanwhile: that value stays)
                out.append(Forget(key))
        else:
            self._input_arrived(key, nbytes)  # tasks here that were fetching it have it now
            msg = {"op": "task-finished", "key": key, "nbytes": nbytes, "duration": duration}
            if inline is not None:
                msg["value"] = inline
            out.append(SendToScheduler(msg))
            self._release_inputs(task)
        if task is not None:
            out.extend(self._forget_orphans(task))
        out.extend(self._start_executions())
        return out

    def task_failed(self, key: str, exception: Any, traceback: Any, text: str,
                    ) -> list[Instruction]:
        task = self.tasks.pop(key, None)
        self.executing.discard(key)
        self.seceded.discard(key)
        out: list[Instruction] = []
        if task is not None and task.state != CANCELLED:
            out.append(SendToScheduler({"op": "task-erred", "key": key, "exception": exception,
                                        "traceback": traceback, "text": text}))
            self._release_inputs(task)
        if task is not None:
            out.extend(self._forget_orphans(task))
        out.extend(self._start_executions())
        return out

    def task_interrupted(self, key: str) -> list[Instruction]:
        """The run of ``key`` was stopped after :class:`Interrupt`. If the scheduler wanted it
        again meanwhile, it runs once more from the start."""
        task = self.tasks.get(key)
        self.executing.discard(key)
        self.seceded.discard(key)
        out: list[Instruction] = []
        if task is not None and task.state == EXECUTING:
            lacking = [d for d in task.dependencies if d not in self.in_memory]
            if lacking:  # an input went meanwhile: the scheduler places the task again
                out.append(SendToScheduler({"op": "missing-data", "key": key,
                                            "dep": lacking[0], "holders": []}))
                out.extend(self._drop_task(task))
            else:
                self._make_ready(task)
        elif task is not None:
            out.extend(self._drop_task(task))
        out.extend(self._start_executions())
        return out

    # ------------------------------------------------------------------ fetch outcomes
    def fetch_done(self, address: str, sizes: dict[str, int]) -> list[Instruction]:
        """Values for ``sizes`` arrived from ``address`` (the I/O layer stored them)."""
        self._peers_busy.discard(address)
        out: list[Instruction] = []
        for key, nbytes in sizes.items():
            self._in_flight.pop(key, None)
            if key in self.in_memory:
                continue  # the scheduler restored it meanwhile: the value is the same
            if not self._needed_by.get(key):
                out.append(Forget(key))  # every task that wanted it was freed meanwhile
                continue
            out.append(SendToScheduler({"op": "add-replica", "key": key, "nbytes": nbytes}))
            self._input_arrived(key, nbytes)
        out.extend(self._start_fetches())
        out.extend(self._start_executions())
        return out

    def data_put(self, sizes: dict[str, int], put: str) -> list[Instruction]:
        """A client put the values of ``sizes`` here (scatter ``put``, which the scheduler
        confirms): they are held here now, also those freed earlier that a task here kept (the
        client's copy is the scheduler's)."""
        for key, nbytes in sizes.items():
            self._input_arrived(key, nbytes)
            self._unconfirmed[key] = put
        return self._start_executions()

    def restore(self, key: str, nbytes: int) -> list[Instruction]:
        """The scheduler handed back its copy of ``key``'s result, whose holder died (the I/O
        layer stored the value): it is held here now, and tasks here waiting for it may run."""
        self._input_arrived(key, nbytes)
        return self._start_executions()

    def fetch_failed(self, address: str, keys: Iterable[str]) -> list[Instruction]:
        """``address`` could not give us ``keys`` (dead, or no longer holds them)."""
        self._peers_busy.discard(address)
        out: list[Instruction] = []
        for key in keys:
            self._in_flight.pop(key, None)
            if key in self.in_memory:
                continue  # restored by the scheduler meanwhile
            if not self._needed_by.get(key):
                # no task here wants it any more: nothing to remember of this attempt (a task
                # wanting it later must try this peer again, which may hold it by then)
                self._tried.pop(key, None)
                continue
            self._tried.setdefault(key, []).append(address)
            if self._holders.get(key):
                continue
            # nobody left to ask: hand the dependent tasks back to the scheduler
            for task_key in list(self._needed_by.get(key, ())):
                task = self.tasks.get(task_key)
                if task is None or task.state != WAITING:
                    continue
                out.append(SendToScheduler({"op": "missing-data", "key": task_key,
                                            "dep": key, "holders": self._tried[key]}))
                out.extend(self._drop_task(task))
            self._tried.pop(key, None)
        out.extend(self._start_fetches())
        return out

    def inputs_gone(self, key: str, deps: list[str]) -> list[Instruction]:
        """The I/O layer found inputs ``deps`` of ``key`` gone that were counted as held here
        (should never happen): forget them, and hand the task back to the scheduler, which
        recomputes or restores them, instead of failing the task or leaving it stuck."""
        for dep in deps:
            self.in_memory.pop(dep, None)
        self.executing.discard(key)
        out: list[Instruction] = []
        task = self.tasks.get(key)
        if task is not None:
            out.extend(self._drop_task(task))
            out.extend(SendToScheduler({"op": "missing-data", "key": key, "dep": dep,
                                        "holders": [self.address]}) for dep in deps)
        out.extend(self._start_executions())
        return out

    def has_data(self, keys: Iterable[str]) -> bool:
        return all(k in self.in_memory for k in keys)

    # ------------------------------------------------------------------ internals
    def _input_arrived(self, key: str, nbytes: int) -> None:
        """``key`` is held here now: tasks that lacked only it are ready, and no peer need be
        asked for it (a fetch still in flight lands on the same value)."""
        self.in_memory[key] = nbytes
        self._orphans.discard(key)
        self._sizes.pop(key, None)
        self._holders.pop(key, None)
        self._tried.pop(key, None)
        for task_key in self._needed_by.get(key, ()):
            task = self.tasks.get(task_key)
            if task is not None and key in task.missing:
                task.missing.discard(key)
                if not task.missing and task.state == WAITING:
                    self._make_ready(task)

    def _make_ready(self, task: WorkerTask) -> None:
        task.state = READY
        task.started = False
        heapq.heappush(self._ready, (task.priority, next(self._counter), task.key))

    def _start_executions(self) -> list[Instruction]:
        out: list[Instruction] = []
        slots = self.nthreads + self.prefetch
        while self._ready and len(self.executing) < slots and not self.paused:
            _, _, key = heapq.heappop(self._ready)
            task = self.tasks.get(key)
            if task is None or task.state != READY:
                continue
            task.state = EXECUTING
            self.executing.add(key)
            out.append(Execute(key))
        return out

    def _start_fetches(self) -> list[Instruction]:
        """Ask peers for missing inputs, several keys per peer, a few peers at a time."""
        by_peer: dict[str, list[str]] = {}
        for key, holders in self._holders.items():
            if key in self._in_flight or key in self.in_memory or not holders:
                continue
            if not self._needed_by.get(key):
                continue
            free = [h for h in holders if h not in self._peers_busy]
            if not free:
                continue
            peer = next((h for h in free if h in by_peer), free[0])
            if peer not in by_peer and len(self._peers_busy) + len(by_peer) >= \
                    self.max_concurrent_fetches:
                continue
            batch = by_peer.setdefault(peer, [])
            if batch and sum(self._sizes.get(k, 0) for k in batch) + self._sizes.get(key, 0) \
                    > self.max_fetch_bytes:
                continue  # the peer would load it all at once (perhaps from disk): next round
            batch.append(key)
        out: list[Instruction] = []
        for peer, keys in by_peer.items():
            self._peers_busy.add(peer)
            for key in keys:
                self._in_flight[key] = peer
                self._holders[key].remove(peer)
            out.append(Fetch(peer, keys))
        for key in [k for k, h in self._holders.items() if not h and k not in self._in_flight]:
            del self._holders[key]
        return out

    def _drop_task(self, task: WorkerTask) -> list[Instruction]:
        self.tasks.pop(task.key, None)
        self._release_inputs(task)
        return self._forget_orphans(task)

    def _needed_here(self, key: str) -> bool:
        """Whether a task here (waiting, ready, running or cancelled but running) has ``key``
        as an input."""
        return self._input_refs.get(key, 0) > 0

    def _forget_orphans(self, task: WorkerTask) -> list[Instruction]:
        """``task`` left (call once per task): its inputs lose a reference, and those the
        scheduler freed meanwhile that no other task here needs go."""
        for key in task.dependencies:
            left = self._input_refs.get(key, 0) - 1
            if left > 0:
                self._input_refs[key] = left
            else:
                self._input_refs.pop(key, None)
        out: list[Instruction] = []
        for key in self._orphans.intersection(task.dependencies):
            if not self._needed_here(key):
                self._orphans.discard(key)
                self.in_memory.pop(key, None)
                out.append(Forget(key))
        return out

    def _release_inputs(self, task: WorkerTask) -> None:
        """``task`` no longer waits for its inputs here: stop fetching what nothing else needs."""
        for key in task.dependencies:
            waiting = self._needed_by.get(key)
            if waiting is not None:
                waiting.discard(task.key)
                if not waiting:
                    del self._needed_by[key]
                    self._holders.pop(key, None)
                    self._tried.pop(key, None)
                    self._sizes.pop(key, None)
