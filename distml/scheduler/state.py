"""The scheduler's state machine: events in, messages out.

A plain class with no sockets and no clock. Each public method takes one event (a graph from a
client, a result from a worker, a lost worker ...) and returns the messages to send, as a mapping
from recipient (a worker address or a client id) to a list of message dicts. The I/O layer in
:mod:`distml.scheduler.server` only decodes, calls, and sends.

Task payloads are opaque bytes: the scheduler never unpickles anything.

Task states: ``released`` (known, not computing, no data), ``waiting`` (needs dependencies that are
not in memory), ``queued`` (ready, waiting for a worker with room), ``processing`` (sent to a
worker), ``memory`` (result held by one or more workers), ``erred``; a task that nobody needs any
more is *forgotten* (removed).
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from distml.config import Config

from distml.scheduler.model import (ERRED, FORGOTTEN, MEMORY, PROCESSING, QUEUED, RELEASED,
                                    TASK_OVERHEAD, WAITING, ClientState, Outbox, TaskState,
                                    WorkerState, key_prefix)
from distml.scheduler.copies import ResultCopies
from distml.scheduler.losses import WorkerLoss
from distml.scheduler.placement import decide_worker, plan_steals


class SchedulerState(WorkerLoss):
    """All tasks, workers and clients, and the rules that move tasks between states."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        if not self.config.transfer_bandwidth > 0:
            raise ValueError(f"transfer_bandwidth must be a positive number of bytes per second, "
                             f"got {self.config.transfer_bandwidth!r}")
        self.tasks: dict[str, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.clients: dict[str, ClientState] = {}
        self.durations: dict[str, float] = {}
        self.transition_log: deque[tuple[str, str, str, str]] = deque(
            maxlen=self.config.transition_log_length)
        self._queue: list[tuple[tuple, int, TaskState]] = []
        self._queue_counter = itertools.count()
        self._generation = 0
        #: key -> {worker: nbytes} for results workers hold that no task here names yet.
        self.unclaimed: dict[str, dict[str, int]] = {}
        self._unclaimed_marked: set[str] = set()
        #: Processing tasks that seceded at some point (their run time includes waiting).
        self._seceded: set[TaskState] = set()
        #: Worker -> the part of its occupancy that is the default guess for task kinds that
        #: never finished yet (see :func:`placement.expected_wait`).
        self._guessed: dict[WorkerState, float] = defaultdict(float)
        #: Small results' bytes, handed back to a live worker when their holder dies.
        self.copies = ResultCopies(self.config.result_copies_bytes)
        #: Why no worker will come (see :meth:`no_workers`); None while one may.
        self.workerless: str | None = None
        self._out: Outbox = defaultdict(list)
        self._holding = 0
        self._stimulus = ""
        #: (workers counted, bytes per second) behind :meth:`bandwidth`; None after a heartbeat
        self._measured: tuple[int, float] | None = None

    # ------------------------------------------------------------------ helpers
    def _send(self, recipient: str, msg: dict[str, Any]) -> None:
        self._out[recipient].append(msg)

    def _flush(self) -> Outbox:
        if self._holding:
            return {}
        if self.workerless is not None and not self.workers:
            self._fail_pending()
        self._dispatch()
        out, self._out = self._out, defaultdict(list)
        return dict(out)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Handle several events (a batch from one peer) and send their messages together:
        inside, event methods return nothing; call :meth:`flush` after."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def flush(self) -> Outbox:
        """Messages collected while holding."""
        return self._flush()

    def _transition(self, ts: TaskState, state: str) -> None:
        self.transition_log.append((ts.key, ts.state, state, self._stimulus))
        ts.state = state

    def _estimate(self, ts: TaskState) -> float:
        return self.durations.get(ts.prefix, self.config.unknown_task_duration)

    def _has_room(self, ws: WorkerState) -> bool:
        if ws.paused:
            return False
        n = ws.busy_threads()
        if n < ws.nthreads:
            return True
        return (ws.occupancy < ws.nthreads * self.config.worker_saturation_seconds
                and n < ws.nthreads * self.config.max_tasks_per_thread)

    # ------------------------------------------------------------------ clients
    def add_client(self, client_id: str, stimulus_id: str = "") -> Outbox:
        self.clients.setdefault(client_id, ClientState(client_id))
        return self._flush()

    def remove_client(self, client_id: str, stimulus_id: str = "") -> Outbox:
        """A client left: release everything only it wanted (cancelling what is still running)."""
        self._stimulus = stimulus_id
        cs = self.clients.pop(client_id, None)
        if cs is not None:
            wanted = list(cs.wants)
            cs.wants.clear()
            for ts in wanted:
                ts.who_wants.discard(cs)
                ts.delivered.discard(cs)
            self._check_needed(wanted)
        return self._flush()

    def update_graph(self, client_id: str, tasks: dict[str, dict[str, Any]],
                     keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """Add tasks (``{key: {"payload", "deps", "prio", "retries"}}``) and want ``keys``.

        Dependencies must be in ``tasks`` or already known; a task whose dependency is unknown
        errs with a message naming it, rather than waiting forever.
        """
        self._stimulus = stimulus_id
        cs = self.clients.get(client_id)
        if cs is None:
            cs = self.clients[client_id] = ClientState(client_id)
        self._generation += 1
        new: list[tuple[TaskState, dict[str, Any]]] = []
        for key, spec in tasks.items():
            if key in self.tasks:
                continue
            ts = TaskState(key, spec["payload"], spec.get("prefix") or key_prefix(key),
                           (self._generation, spec.get("prio", 0)), spec.get("retries", 0))
            self.tasks[key] = ts
            new.append((ts, spec))
        missing: list[tuple[TaskState, str]] = []
        for ts, spec in new:
            for dep_key in spec.get("deps", ()):
                dts = self.tasks.get(dep_key)
                if dts is None:
                    missing.append((ts, dep_key))
                    continue
                ts.dependencies.add(dts)
                dts.dependents.add(ts)
        wanted = []
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None and key in self.unclaimed:  # scattered data, declared by a worker
                ts = self.tasks[key] = TaskState(key, None, key_prefix(key), (0, 0))
                self._claim(ts)
            if ts is None:
                self._send(client_id, {"op": "key-erred", "key": key, "exception": None,
                                       "traceback": None, "erred_key": key,
                                       "text": f"key {key!r} is not in the graph"})
                continue
            ts.who_wants.add(cs)
            cs.wants.add(ts)
            self._report_to(cs, ts)  # already finished (or failed) before this graph came
            wanted.append(ts)
        claimed = [ts for ts, _ in new if ts.key in self.unclaimed and self._claim(ts)]
        for ts, dep_key in missing:
            self._set_erred(ts, None, None, f"dependency {dep_key!r} of {ts.key!r} is not known "
                            "to the scheduler (was its future released?)", ts.key, "graph")
        for ts in wanted:
            self._ensure_computing(ts)
        self._check_needed(claimed)
        for ts, _ in new:  # tasks sent but not wanted, nor needed by wanted ones
            if ts.key in self.tasks and ts.state == RELEASED and not self._needed(ts):
                self._check_needed([ts])
        return self._flush()

    def want_keys(self, client_id: str, keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """A client holds new futures on existing keys (e.g. a future passed between clients)."""
        return self.update_graph(client_id, {}, keys, stimulus_id)

    def release_keys(self, client_id: str, keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """A client dropped its last future on each of ``keys``."""
        self._stimulus = stimulus_id
        cs = self.clients.get(client_id)
        touched = []
        for key in keys:
            ts = self.tasks.get(key)
            if ts is not None and cs is not None and cs in ts.who_wants:
                ts.who_wants.discard(cs)
                ts.delivered.discard(cs)
                cs.wants.discard(ts)
                touched.append(ts)
        self._check_needed(touched)
        return self._flush()

    def cancel(self, client_id: str, keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """Stop computing ``keys`` for this client; its futures report cancellation."""
        keys = list(keys)
        for key in keys:
            if key in self.tasks:
                self._send(client_id, {"op": "key-cancelled", "key": key})
        return self.release_keys(client_id, keys, stimulus_id)

    def retry(self, client_id: str, keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """Run erred tasks (and the erred tasks they depend on) again."""
        self._stimulus = stimulus_id
        todo = [self.tasks[k] for k in keys if k in self.tasks]
        roots: list[TaskState] = []
        seen: set[TaskState] = set()
        while todo:
            ts = todo.pop()
            if ts in seen or ts.state != ERRED:
                continue
            seen.add(ts)
            ts.exception = ts.traceback = None
            ts.exception_text = ""
            ts.erred_key = None
            ts.suspicious = 0
            self._transition(ts, RELEASED)
            roots.append(ts)
            todo.extend(ts.dependencies)
        for ts in roots:
            if self._needed(ts):
                self._ensure_computing(ts)
        return self._flush()

    def scatter(self, client_id: str, who_has: dict[str, list[str]], nbytes: dict[str, int],
                put: str = "", stimulus_id: str = "") -> Outbox:
        """A client placed data on workers directly (its scatter ``put``); record it as keys in
        memory, and confirm it to each holder (frees it receives before the confirmation
        predate its copy, see the worker's ``confirm``)."""
        self._stimulus = stimulus_id
        cs = self.clients.get(client_id) or self.clients.setdefault(client_id,
                                                                   ClientState(client_id))
        confirmed: dict[str, list[str]] = {}
        for key, addresses in who_has.items():
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = TaskState(key, None, key_prefix(key), (0, 0))
            holders = [self.workers[a] for a in addresses if a in self.workers]
            if not holders:
                continue
            if ts.state != MEMORY:
                self._transition(ts, MEMORY)
            ts.nbytes = nbytes.get(key, 0)
            for ws in holders:
                self._add_replica(ts, ws)
                confirmed.setdefault(ws.address, []).append(key)
            ts.who_wants.add(cs)
            cs.wants.add(ts)
            self._report_to(cs, ts)
            self._release_dependents_of(ts)
        for address, keys in confirmed.items():
            self._send(address, {"op": "confirm", "keys": keys, "put": put})
        return self._flush()

    # ------------------------------------------------------------------ workers
    def add_worker(self, address: str, nthreads: int, memory_limit: int = 0, name: str = "",
                   keys: dict[str, int] | None = None, stimulus_id: str = "") -> Outbox:
        """A worker joined (or rejoined, holding ``keys`` -> nbytes)."""
        self._stimulus = stimulus_id
        self.workerless = None
        ws = self.workers.get(address)
        if ws is None:
            ws = self.workers[address] = WorkerState(address, name or address, max(1, nthreads),
                                                     memory_limit)
        stale = []
        for key, size in (keys or {}).items():
            ts = self.tasks.get(key)
            if ts is None:
                # after a scheduler restart: kept until a client resubmits the key, or freed
                self.unclaimed.setdefault(key, {})[address] = size
            elif ts.state == ERRED:
                stale.append(key)
            else:
                self._arrived(ts, ws, size)
        if stale:
            self._send(address, {"op": "free", "keys": stale})
        return self._flush()

    def sweep_unclaimed(self, stimulus_id: str = "") -> Outbox:
        """Free results that workers declared but no client claimed since the previous sweep.
        Called periodically by the I/O layer, every ``unclaimed_timeout / 2`` seconds."""
        for key in self._unclaimed_marked & set(self.unclaimed):
            for address in self.unclaimed.pop(key):
                if address in self.workers:
                    self._send(address, {"op": "free", "keys": [key]})
        self._unclaimed_marked = set(self.unclaimed)
        return self._flush()

    def task_finished(self, worker: str, key: str, nbytes: int, duration: float,
                      value: bytes | None = None, stimulus_id: str = "") -> Outbox:
        """``worker`` holds ``key``'s result. A small result comes along as opaque ``value``
        bytes and is passed on to the clients that want it (never unpickled, never kept)."""
        self._stimulus = stimulus_id
        ts = self.tasks.get(key)
        ws = self.workers.get(worker)
        if ws is None:
            return self._flush()
        if ts is None or ts.state not in (PROCESSING, MEMORY):
            self._send(worker, {"op": "free", "keys": [key]})
            return self._flush()
        if ts.state == MEMORY:  # a second copy, e.g. after a steal raced with the victim
            self._add_replica(ts, ws)
            return self._flush()
        if ts.processing_on is not ws:
            self._send(worker, {"op": "free", "keys": [key]})
            return self._flush()
        if ts not in self._seceded:  # a task that waited on others says little of its kind
            old = self.durations.get(ts.prefix)
            measured = duration + TASK_OVERHEAD
            self.durations[ts.prefix] = measured if old is None else 0.5 * old + 0.5 * measured
            if old is None:
                self._replace_guesses(ts.prefix)
        if value is not None and ts.dependents:
            self.copies.keep(key, value)
        self._arrived(ts, ws, nbytes, value)
        if ws.busy_threads() < ws.nthreads and not ws.paused:
            self._steal()  # a thread that ran out of work need not wait for the next balance
        return self._flush()

    def task_started(self, worker: str, keys: Iterable[str], stimulus_id: str = "") -> Outbox:
        """``worker`` began running ``keys``: if it dies now, these tasks are suspects."""
        ws = self.workers.get(worker)
        for key in keys:
            ts = self.tasks.get(key)
            if ts is not None and ts.state == PROCESSING and ts.processing_on is ws:
                ts.started = True
        return self._flush()

    def task_seceded(self, worker: str, key: str, stimulus_id: str = "") -> Outbox:
        """The task ``key`` on ``worker`` gave its thread back while it waits (on tasks it
        submitted): it stops counting against the worker's threads and estimated work, so that
        the tasks it waits for can be placed there."""
        ts = self.tasks.get(key)
        ws = self.workers.get(worker)
        if ts is not None and ws is not None and ts.state == PROCESSING \
                and ts.processing_on is ws and ts not in ws.long_running:
            ws.long_running.add(ts)
            self._seceded.add(ts)
            self._forget_estimate(ts, ws, ws.processing[ts])
            ws.occupancy = max(0.0, ws.occupancy - ws.processing[ts])
            ws.processing[ts] = 0.0
        return self._flush()

    def task_rejoined(self, worker: str, key: str, stimulus_id: str = "") -> Outbox:
        """The seceded task ``key`` holds a thread of ``worker`` again."""
        ts = self.tasks.get(key)
        ws = self.workers.get(worker)
        if ts is not None and ws is not None:
            ws.long_running.discard(ts)
        return self._flush()

    def task_erred(self, worker: str, key: str, exception: Any, traceback: Any, text: str,
                   stimulus_id: str = "") -> Outbox:
        """A task raised. ``exception``/``traceback`` are opaque serialized blobs for clients."""
        self._stimulus = stimulus_id
        ts = self.tasks.get(key)
        ws = self.workers.get(worker)
        if ts is None or ws is None or ts.state != PROCESSING or ts.processing_on is not ws:
            return self._flush()
        self._stop_processing(ts)
        if ts.retries > 0:
            ts.retries -= 1
            self._transition(ts, RELEASED)
            self._ensure_computing(ts)
        else:
            self._set_erred(ts, exception, traceback, text, key)
        return self._flush()

    def missing_data(self, worker: str, key: str, dep_key: str, holders: Iterable[str],
                     stimulus_id: str = "") -> Outbox:
        """``worker`` could not fetch ``dep_key`` (needed by ``key``) from any of ``holders``."""
        self._stimulus = stimulus_id
        dts = self.tasks.get(dep_key)
        if dts is not None:
            for address in holders:
                hws = self.workers.get(address)
                if hws is not None and hws in dts.who_has:
                    dts.who_has.discard(hws)
                    hws.has_what.discard(dts)
                    hws.nbytes -= dts.nbytes
            if dts.state == MEMORY and not dts.who_has:
                self._lose_data([dts], f"no worker could serve it to {worker}")
        ts = self.tasks.get(key)
        if ts is not None and ts.state == PROCESSING and ts.processing_on is self.workers.get(worker):
            self._stop_processing(ts)
            self._send(worker, {"op": "free", "keys": [key]})
            self._transition(ts, RELEASED)
            self._ensure_computing(ts)
        return self._flush()

    def add_replica(self, worker: str, key: str, nbytes: int, stimulus_id: str = "") -> Outbox:
        """``worker`` fetched a copy of ``key`` from a peer; it can now serve it too."""
        ts = self.tasks.get(key)
        ws = self.workers.get(worker)
        if ts is not None and ws is not None and ts.state == MEMORY:
            self._add_replica(ts, ws)
        elif ws is not None:
            self._send(worker, {"op": "free", "keys": [key]})
        return self._flush()

    def heartbeat(self, worker: str, metrics: dict[str, Any], stimulus_id: str = "") -> Outbox:
        ws = self.workers.get(worker)
        if ws is not None:
            ws.metrics = {k: v for k, v in metrics.items() if k != "op" and isinstance(v, int)}
            self._measured = None
        return self._flush()

    def bandwidth(self) -> float:
        """Bytes per second between workers: the mean of what workers measured on their fetches
        (``bandwidth`` in their heartbeats), or the configured guess until one has."""
        if self._measured is None or self._measured[0] != len(self.workers):
            rates = [ws.metrics["bandwidth"] for ws in self.workers.values()
                     if ws.metrics.get("bandwidth", 0) > 0]
            self._measured = (len(self.workers), sum(rates) / len(rates) if rates
                              else self.config.transfer_bandwidth)
        return self._measured[1]

    def set_paused(self, worker: str, paused: bool, stimulus_id: str = "") -> Outbox:
        ws = self.workers.get(worker)
        if ws is not None:
            ws.paused = paused
        return self._flush()

    # ------------------------------------------------------------------ stealing
    def balance(self, stimulus_id: str = "") -> Outbox:
        """Move queued-on-worker tasks from overloaded workers to idle ones (work stealing).

        Called periodically by the I/O layer, and when a worker's thread runs out of work (a
        task finished and nothing replaced it). Only tasks whose estimated run time outweighs the
        cost of moving their inputs are stolen, and the victim confirms before anything moves.
        """
        self._stimulus = stimulus_id
        self._steal()
        return self._flush()

    def _steal(self) -> None:
        if self._queue or len(self.workers) < 2:
            return
        for ts, thief in plan_steals(self.workers.values(), self.durations,
                                     self.bandwidth()):
            ts.stealing_to = thief
            self._send(ts.processing_on.address, {"op": "steal", "key": ts.key})

    def steal_response(self, worker: str, key: str, ok: bool, stimulus_id: str = "") -> Outbox:
        self._stimulus = stimulus_id
        ts = self.tasks.get(key)
        if ts is None:
            return self._flush()
        thief, ts.stealing_to = ts.stealing_to, None
        victim = self.workers.get(worker)
        if not ok or ts.state != PROCESSING or ts.processing_on is not victim:
            return self._flush()
        self._stop_processing(ts)
        self._transition(ts, RELEASED)
        if thief is not None and thief.address in self.workers:
            self._transition(ts, WAITING)
            self._assign(ts, thief)
        else:
            self._ensure_computing(ts)
        return self._flush()

    # ------------------------------------------------------------------ queries
    def who_has(self, keys: Iterable[str]) -> dict[str, list[str]]:
        out = {}
        for key in keys:
            ts = self.tasks.get(key)
            out[key] = [ws.address for ws in ts.who_has] if ts is not None else []
        return out

    def pending(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` still to run: waiting, queued or processing (for progress bars)."""
        return [key for key in keys if (ts := self.tasks.get(key)) is not None
                and ts.state in (WAITING, QUEUED, PROCESSING)]

    def story(self, keys: Iterable[str]) -> list[tuple[str, str, str, str]]:
        """Every recorded transition of ``keys``: (key, from, to, stimulus)."""
        wanted = set(keys)
        return [entry for entry in self.transition_log if entry[0] in wanted]

    def task_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for ts in self.tasks.values():
            counts[ts.state] += 1
        return dict(counts)

    # ------------------------------------------------------------------ internals
    def _needed(self, ts: TaskState) -> bool:
        return bool(ts.who_wants or ts.waiters)

    def _report_to(self, cs: ClientState, ts: TaskState, value: bytes | None = None) -> None:
        if ts.state == MEMORY:
            msg = {"op": "key-done", "key": ts.key, "nbytes": ts.nbytes,
                   "workers": [ws.address for ws in ts.who_has]}
            if value is not None:
                msg["value"] = value
                ts.delivered.add(cs)
            else:
                ts.delivered.discard(cs)
            self._send(cs.id, msg)
        elif ts.state == ERRED:
            self._send(cs.id, {"op": "key-erred", "key": ts.key, "exception": ts.exception,
                               "traceback": ts.traceback, "text": ts.exception_text,
                               "erred_key": ts.erred_key, "kind": ts.erred_kind})

    def _ensure_computing(self, root: TaskState) -> None:
        """Make ``root`` and whatever it transitively needs run (released -> waiting/ready)."""
        stack = [root]
        while stack:
            ts = stack.pop()
            if ts.state != RELEASED or self._restore(ts):
                continue
            if ts.payload is None:
                self._set_erred(ts, None, None, f"scattered data {ts.key!r} was lost and cannot "
                                "be recomputed", ts.key, "lost")
                continue
            if ts.dependencies:
                failed = next((d for d in ts.dependencies if d.state == ERRED), None)
                if failed is not None:
                    self._inherit_error(ts, failed)
                    continue
            ts.waiting_on = {d for d in ts.dependencies if d.state != MEMORY}
            for dts in ts.dependencies:
                dts.waiters.add(ts)
            self._transition(ts, WAITING)
            if ts.waiting_on:
                stack.extend(d for d in ts.waiting_on if d.state == RELEASED)
            else:
                self._ready(ts)

    # ------------------------------------------------------------------ placement
    def _forget_estimate(self, ts: TaskState, ws: WorkerState, estimate: float) -> None:
        """``ts`` no longer counts ``estimate`` on ``ws``: drop it from the guessed share."""
        if ts.prefix not in self.durations and ws in self._guessed:
            self._guessed[ws] = max(0.0, self._guessed[ws] - estimate)

    def _replace_guesses(self, prefix: str) -> None:
        """``prefix`` just got its first measured duration: tasks of that kind already sent to
        workers count at the measurement from now on instead of the default guess."""
        measured = self.durations[prefix]
        for ws in self.workers.values():
            replaced = 0.0
            for t, estimate in ws.processing.items():
                if t.prefix == prefix and t not in ws.long_running:
                    ws.processing[t] = measured
                    ws.occupancy = max(0.0, ws.occupancy + measured - estimate)
                    replaced += estimate
            if replaced and ws in self._guessed:
                self._guessed[ws] = max(0.0, self._guessed[ws] - replaced)

    def _ready(self, ts: TaskState) -> None:
        """All inputs are in memory: place the task on a worker, or queue it for one."""
        if ts.dependencies:
            ws = self._decide_worker(ts)
            if ws is not None:
                self._assign(ts, ws)
                return
        self._transition(ts, QUEUED)
        heapq.heappush(self._queue, (ts.priority, next(self._queue_counter), ts))

    def _decide_worker(self, ts: TaskState) -> WorkerState | None:
        """Where a task with inputs runs (see :func:`placement.decide_worker`)."""
        return decide_worker(ts, self.workers.values(), self._guessed,
                             self.config.unknown_task_duration, self.bandwidth())

    def _dispatch(self) -> None:
        """Hand queued tasks to workers with room, highest priority first."""
        if not self._queue or not self.workers:
            return
        open_workers = [ws for ws in self.workers.values() if self._has_room(ws)]
        while self._queue and open_workers:
            _, _, ts = self._queue[0]
            if ts.state != QUEUED:
                heapq.heappop(self._queue)
                continue
            ws = self._decide_worker(ts) if ts.dependencies else min(
                open_workers, key=WorkerState.load)
            if ws is None:
                return
            if ws not in open_workers:
                ws = min(open_workers, key=WorkerState.load)
            heapq.heappop(self._queue)
            self._assign(ts, ws)
            if not self._has_room(ws):
                open_workers.remove(ws)

    def _take_off_queue(self, ts: TaskState) -> None:
        if ts.state == QUEUED:  # the heap entry goes stale and is skipped by _dispatch
            self._transition(ts, RELEASED)

    def _assign(self, ts: TaskState, ws: WorkerState) -> None:
        estimate = self._estimate(ts)
        ws.processing[ts] = estimate
        ws.occupancy += estimate
        if ts.prefix not in self.durations:
            self._guessed[ws] += estimate
        ts.processing_on = ws
        self._transition(ts, PROCESSING)
        self._send(ws.address, {
            "op": "compute", "key": ts.key, "payload": ts.payload, "prio": list(ts.priority),
            "deps": {d.key: [h.address for h in d.who_has] for d in ts.dependencies},
            "nbytes": {d.key: d.nbytes for d in ts.dependencies},
        })

    def _stop_processing(self, ts: TaskState) -> None:
        ws = ts.processing_on
        if ws is not None:
            estimate = ws.processing.pop(ts, 0.0)
            ws.long_running.discard(ts)
            self._seceded.discard(ts)
            ws.occupancy = max(0.0, ws.occupancy - estimate)
            self._forget_estimate(ts, ws, estimate)
            if not ws.processing:
                ws.occupancy = 0.0
                self._guessed.pop(ws, None)
        ts.processing_on = None
        ts.stealing_to = None
        ts.started = False

    def _add_replica(self, ts: TaskState, ws: WorkerState) -> None:
        if ws not in ts.who_has:
            ts.who_has.add(ws)
            ws.has_what.add(ts)
            ws.nbytes += ts.nbytes

    def _arrived(self, ts: TaskState, ws: WorkerState, nbytes: int,
                 value: bytes | None = None, check: bool = True) -> None:
        """``ws`` holds ``ts``'s result (it computed it, or declared it on joining).
        ``check=False`` keeps it even if nothing needs it yet (the caller checks later)."""
        if ts.state == MEMORY:
            self._add_replica(ts, ws)
            return
        if ts.state == PROCESSING:
            if ts.processing_on is not ws:  # computed elsewhere meanwhile: stop this run
                self._send(ts.processing_on.address, {"op": "free", "keys": [ts.key]})
            self._stop_processing(ts)
        ts.waiting_on.clear()
        self._transition(ts, MEMORY)
        ts.nbytes = nbytes
        self._add_replica(ts, ws)
        for cs in ts.who_wants:
            self._report_to(cs, ts, value)
        self._release_dependents_of(ts)
        done_with = [dts for dts in ts.dependencies if ts in dts.waiters]
        for dts in done_with:
            dts.waiters.discard(ts)
        self._check_needed(done_with + [ts] if check else done_with)

    def _claim(self, ts: TaskState) -> bool:
        """A task whose result a rejoined worker declared: it is in memory already."""
        holders = self.unclaimed.pop(ts.key, {})
        alive = [(self.workers[a], n) for a, n in holders.items() if a in self.workers]
        for ws, nbytes in alive:
            self._arrived(ts, ws, nbytes, check=False)
        return bool(alive)

    def _release_dependents_of(self, ts: TaskState) -> None:
        """``ts`` is in memory: dependents waiting only on it become ready."""
        for dep in ts.dependents:
            if dep.state == WAITING and ts in dep.waiting_on:
                dep.waiting_on.discard(ts)
                if not dep.waiting_on:
                    self._ready(dep)

    def _inherit_error(self, ts: TaskState, failed: TaskState) -> None:
        self._set_erred(ts, failed.exception, failed.traceback, failed.exception_text,
                        failed.erred_key or failed.key, failed.erred_kind)

    def _set_erred(self, root: TaskState, exception: Any, traceback: Any, text: str,
                   erred_key: str, kind: str = "task") -> None:
        """``root`` failed; everything waiting on it fails with the same error."""
        stack = [root]
        released_inputs: list[TaskState] = []
        while stack:
            ts = stack.pop()
            if ts.state == ERRED:
                continue
            if ts.state == PROCESSING and ts.processing_on is not None:
                self._send(ts.processing_on.address, {"op": "free", "keys": [ts.key]})
                self._stop_processing(ts)
            self._transition(ts, ERRED)
            self.copies.drop(ts.key)
            ts.exception, ts.traceback = exception, traceback
            ts.exception_text, ts.erred_key, ts.erred_kind = text, erred_key, kind
            ts.waiting_on.clear()
            for dts in ts.dependencies:
                if ts in dts.waiters:
                    dts.waiters.discard(ts)
                    released_inputs.append(dts)
            for cs in ts.who_wants:
                self._report_to(cs, ts)
            stack.extend(d for d in ts.dependents if d.state in (WAITING, QUEUED, PROCESSING))
        self._check_needed(released_inputs)

    def _check_needed(self, candidates: Iterable[TaskState]) -> None:
        """Release results nobody needs, stop work nobody wants, forget unreferenced tasks."""
        stack = list(candidates)
        while stack:
            ts = stack.pop()
            if self.tasks.get(ts.key) is not ts or self._needed(ts):
                continue
            if ts.state == MEMORY:
                for ws in ts.who_has:
                    ws.has_what.discard(ts)
                    ws.nbytes -= ts.nbytes
                    self._send(ws.address, {"op": "free", "keys": [ts.key]})
                ts.who_has.clear()
                self._transition(ts, RELEASED)
            elif ts.state in (WAITING, QUEUED, PROCESSING):
                if ts.state == PROCESSING:
                    self._send(ts.processing_on.address, {"op": "free", "keys": [ts.key]})
                    self._stop_processing(ts)
                self._transition(ts, RELEASED)
                ts.waiting_on.clear()
                for dts in ts.dependencies:
                    if ts in dts.waiters:
                        dts.waiters.discard(ts)
                        stack.append(dts)
            if ts.state in (RELEASED, ERRED) and not ts.dependents:
                self._transition(ts, FORGOTTEN)
                del self.tasks[ts.key]
                self.copies.drop(ts.key)
                for dts in ts.dependencies:
                    dts.dependents.discard(ts)
                    dts.waiters.discard(ts)
                    stack.append(dts)
