"""The scheduler's I/O layer: accepts authenticated connections from workers and clients, checks
each message's shape, feeds it to :class:`SchedulerState` and sends back what the state says.

It never unpickles: task payloads and exceptions pass through as opaque bytes.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import time
import uuid
from typing import Any, Callable, Sequence

from distml.batched import BatchedStream, unbatch
from distml.comm import Comm, Listener
from distml.config import Config
from distml.diagnostics.recorder import MEMORY_SAMPLE_SECONDS, Recorder
from distml.errors import CommClosedError, ProtocolError
from distml.inproc import InProcessComm, comm_pair
from distml.protocol import payload
from distml.scheduler.state import Outbox, SchedulerState

logger = logging.getLogger(__name__)

_NUM = (int, float)
_KEYS = ("keys", list)

#: The fields (and their types) each operation must carry, checked before the state sees it.
WORKER_OPS: dict[str, tuple[tuple[str, Any], ...]] = {
    "task-finished": (("key", str), ("nbytes", int), ("duration", _NUM)),
    "task-erred": (("key", str), ("text", str)),
    "add-replica": (("key", str), ("nbytes", int)),
    "missing-data": (("key", str), ("dep", str), ("holders", list)),
    "steal-response": (("key", str), ("ok", bool)),
    "heartbeat": (),
    "paused": (("paused", bool),),
    "goodbye": (),
    "started": (_KEYS,),
    "secede": (("key", str),),
    "rejoin": (("key", str),),
}
CLIENT_OPS: dict[str, tuple[tuple[str, Any], ...]] = {
    "update-graph": (("tasks", dict), _KEYS),
    "release-keys": (_KEYS,),
    "want-keys": (_KEYS,),
    "cancel": (_KEYS,),
    "retry": (_KEYS,),
    "scatter": (("who_has", dict), ("nbytes", dict), ("put", str)),
    "who-has": (_KEYS, ("id", int)),
    "story": (_KEYS, ("id", int)),
    "pending": (_KEYS, ("id", int)),
    "info": (("id", int),),
    "heartbeat": (),
    "activity": (("name", str),),
    "history": (("id", int), ("since", _NUM)),
    "dump-state": (("id", int),),
}


def check_message(msg: dict[str, Any], ops: dict[str, tuple[tuple[str, Any], ...]]) -> str:
    """Return ``msg``'s op after checking its fields, or raise ``ProtocolError`` naming them."""
    op = msg.get("op")
    if op not in ops:
        raise ProtocolError(f"unknown operation {op!r}")
    for name, kind in ops[op]:
        value = msg.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ProtocolError(f"operation {op!r}: field {name!r} missing or of the wrong type "
                                f"({type(value).__name__})")
    return op


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _check_registration(header: dict[str, Any]) -> tuple[str, int, int, dict[str, int]]:
    """The fields of a ``register-worker`` message, checked before anything is recorded."""
    address, nthreads = header.get("address"), header.get("nthreads")
    memory_limit = header.get("memory_limit") or 0
    keys = header.get("keys") or {}
    if not isinstance(address, str) or not address:
        raise ProtocolError("register-worker needs an 'address' string")
    if not _is_count(nthreads) or nthreads < 1:
        raise ProtocolError("register-worker needs a positive integer 'nthreads'")
    if not _is_count(memory_limit):
        raise ProtocolError("register-worker: 'memory_limit' must be a non-negative integer")
    if not isinstance(keys, dict) or not all(
            isinstance(k, str) and _is_count(n) for k, n in keys.items()):
        raise ProtocolError("register-worker: 'keys' must map key strings to byte counts")
    return address, nthreads, memory_limit, keys


def _check_graph_tasks(tasks: dict[str, Any], frames: Sequence[Any]) -> None:
    """Check an update-graph's tasks and put each payload's large parts back from ``frames``."""
    for key, spec in tasks.items():
        if not isinstance(key, str) or not isinstance(spec, dict):
            raise ProtocolError("update-graph: tasks must map str keys to dicts")
        if not isinstance(spec.get("deps", []), list):
            raise ProtocolError(f"update-graph: task {key!r} needs a deps list")
        try:
            spec["payload"] = payload.from_header(spec.get("payload"), frames)
        except ProtocolError as exc:
            raise ProtocolError(f"update-graph: task {key!r}: {exc}") from None


def _framed(msg: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """``msg`` ready to send: a compute message's large payload parts become frames."""
    if msg.get("op") != "compute" or all(type(part) is bytes for part in msg["payload"]):
        return msg, []
    frames: list = []
    return {**msg, "payload": payload.to_header(msg["payload"], frames)}, frames


class Scheduler:
    """Serves the scheduling state machine over TCP."""

    def __init__(self, address: str = "tcp://127.0.0.1:0", config: Config | None = None):
        self.config = config or Config.load()
        self.state = SchedulerState(self.config)
        self.listener = Listener(address, self._handle_comm, self.config)
        self.streams: dict[str, BatchedStream] = {}
        self._comms: dict[str, Comm] = {}
        self._last_seen: dict[str, float] = {}
        self._leaving: set[str] = set()
        self._supervised: set[str] = set()
        #: Nanny id -> True while it restarts its dead worker, False while its worker runs;
        #: a nanny that gave up is removed (see :meth:`_check_workerless`).
        self._nannies: dict[str, bool] = {}
        #: Worker address -> the id of the nanny that runs it.
        self._nanny_of: dict[str, str] = {}
        self._gave_up: list[str] = []
        self._workerless_since: float | None = time.monotonic()
        self._death_reasons: dict[str, str] = {}
        self._death_reported: dict[str, asyncio.Event] = {}
        self._received = time.time()
        self._stimulus = itertools.count()
        self._periodic: asyncio.Task | None = None
        #: Handlers of in-process connections (kept referenced while they run).
        self._in_process: set[asyncio.Task] = set()
        self._closed = asyncio.Event()
        self._worker_joined = asyncio.Event()
        self.started = time.time()
        #: Task timings, worker memory over time, activities: for the dashboard and reports.
        self.recorder = Recorder(self.config.task_stream_length)
        self.dashboard: Any = None
        self._dashboard_start: asyncio.Task | None = None

    @property
    def address(self) -> str:
        return self.listener.address

    async def start(self) -> "Scheduler":
        await self.listener.start()
        self._periodic = asyncio.get_running_loop().create_task(self._housekeeping())
        logger.info("scheduler listening at %s", self.address)
        if self.config.dashboard:  # starts while the first workers do (see dashboard_started)
            self._dashboard_start = asyncio.get_running_loop().create_task(
                self._start_dashboard())
        return self

    async def _start_dashboard(self) -> None:
        # imported in a thread: tornado.web takes a while, and the loop has workers to greet
        module = await asyncio.get_running_loop().run_in_executor(
            None, importlib.import_module, "distml.dashboard.server")
        try:
            self.dashboard = await module.Dashboard(self).start(self.config.dashboard_port)
        except OSError as exc:  # the cluster works without it
            logger.error("could not start the dashboard on port %d: %s",
                         self.config.dashboard_port, exc)

    async def dashboard_started(self) -> Any:
        """The dashboard once it serves (None when it is off or could not start)."""
        if self._dashboard_start is not None:
            await asyncio.wait([self._dashboard_start])  # not cancelled with the waiter
        return self.dashboard

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._periodic is not None:
            self._periodic.cancel()
        if self._dashboard_start is not None:
            self._dashboard_start.cancel()
        if self.dashboard is not None:
            self.dashboard.stop()
        for stream in list(self.streams.values()):
            await stream.close()
        for comm in list(self._comms.values()):
            await comm.close()
        self.listener.stop()

    async def finished(self) -> None:
        await self._closed.wait()

    async def worker_joined(self, timeout: float) -> None:
        """Wait until a worker joins, or ``timeout`` passes."""
        try:
            await asyncio.wait_for(self._worker_joined.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._worker_joined.clear()

    # ------------------------------------------------------------------ routing
    def _route(self, out: Outbox) -> None:
        for recipient, msgs in out.items():
            stream = self.streams.get(recipient)
            if stream is not None:
                for msg in msgs:
                    stream.send(*_framed(msg))

    def _apply(self, method: Callable[..., Outbox], *args: Any, **kwargs: Any) -> None:
        """Feed one event to the state machine, tagged with its cause for ``story``: the event's
        name, a sequence number, and the time its message arrived."""
        kwargs["stimulus_id"] = f"{method.__name__}-{next(self._stimulus)}-{self._received:.6f}"
        self._route(method(*args, **kwargs))

    # ------------------------------------------------------------------ connections
    def connect_in_process(self) -> InProcessComm:
        """A connection for a client in this process (on this loop): no socket, no handshake
        (see :mod:`distml.inproc`). Served like any other."""
        if self._closed.is_set():
            raise CommClosedError(f"scheduler at {self.address} is closed")
        client_end, server_end = comm_pair(self.address, self.config)
        task = asyncio.get_running_loop().create_task(self._handle_comm(server_end))
        self._in_process.add(task)
        task.add_done_callback(self._in_process.discard)
        return client_end

    async def _handle_comm(self, comm: Comm) -> None:
        try:
            header, _ = await comm.recv()
        except (CommClosedError, ProtocolError) as exc:
            logger.warning("dropping %s before registration: %s", comm.peer_address, exc)
            await comm.close()
            return
        op = header.get("op")
        if op == "register-worker":
            await self._serve_worker(comm, header)
        elif op == "worker-died":
            await self._worker_died(comm, header)
        elif op == "register-client":
            await self._serve_client(comm, header)
        else:
            logger.warning("peer %s opened with unknown operation %r; closing", comm.peer_address,
                           op)
            await comm.send({"op": "error", "message": f"unknown operation {op!r}"})
            await comm.close()

    async def _serve_worker(self, comm: Comm, header: dict[str, Any]) -> None:
        try:
            address, nthreads, memory_limit, keys = _check_registration(header)
            if address in self.streams:
                raise ProtocolError(f"worker {address} already registered")
        except ProtocolError as exc:
            logger.warning("refused worker registration from %s: %s", comm.peer_address, exc)
            await comm.send({"op": "error", "message": str(exc)})
            await comm.close()
            return
        stream = BatchedStream(comm, self.config.batch_interval)
        self.streams[address] = stream
        self._comms[address] = comm
        self._last_seen[address] = time.monotonic()
        if header.get("nanny"):
            self._supervised.add(address)
            if isinstance(header["nanny"], str):
                self._nannies[header["nanny"]] = False
                self._nanny_of[address] = header["nanny"]
        self._workerless_since = None
        reason = "connection closed"
        try:
            await comm.send({"op": "registered", "scheduler": self.address})
            stream.start()
            self._received = time.time()
            self._apply(self.state.add_worker, address, nthreads, memory_limit,
                        str(header.get("name") or address), keys)
            self._worker_joined.set()
            logger.info("worker %s joined (%d threads)", address, nthreads)
            while True:
                msg, _ = await comm.recv()
                self._received = time.time()
                self._last_seen[address] = time.monotonic()
                with self.state.hold():
                    for sub, _ in unbatch(msg):
                        self._worker_message(address, sub)
                self._route(self.state.flush())
        except CommClosedError:
            pass
        except (ProtocolError, ValueError) as exc:
            reason = f"protocol error: {exc}"
            logger.error("worker %s sent a bad message (%s); disconnecting it", address, exc)
        finally:
            await self._drop_worker(address, reason)

    def _worker_message(self, address: str, msg: dict[str, Any]) -> None:
        op = check_message(msg, WORKER_OPS)
        s = self.state
        if op == "task-finished":
            value = msg.get("value")
            if value is not None and not isinstance(value, bytes):
                raise ProtocolError("task-finished: 'value' must be bytes")
            self._apply(s.task_finished, address, msg["key"], msg["nbytes"], msg["duration"],
                        value)
            self.recorder.task_finished(address, msg["key"], msg["duration"], self._received)
        elif op == "task-erred":
            self.recorder.task_erred(address, msg["key"], self._received)
            self._apply(s.task_erred, address, msg["key"], msg.get("exception"),
                        msg.get("traceback"), msg["text"])
        elif op == "add-replica":
            self._apply(s.add_replica, address, msg["key"], msg["nbytes"])
        elif op == "missing-data":
            self._apply(s.missing_data, address, msg["key"], msg["dep"], msg["holders"])
        elif op == "steal-response":
            self._apply(s.steal_response, address, msg["key"], msg["ok"])
        elif op == "paused":
            self._apply(s.set_paused, address, msg["paused"])
        elif op == "heartbeat":
            self._apply(s.heartbeat, address, msg)
        elif op == "started":
            self._apply(s.task_started, address, msg["keys"])
            self.recorder.task_started(msg["keys"], self._received)
        elif op == "secede":
            self._apply(s.task_seceded, address, msg["key"])
        elif op == "rejoin":
            self._apply(s.task_rejoined, address, msg["key"])
        elif op == "goodbye":
            self._leaving.add(address)

    async def _worker_died(self, comm: Comm, header: dict[str, Any]) -> None:
        """A nanny says why its worker died (memory, signal, exit code), and whether it starts
        a new one."""
        address, reason = header.get("address"), header.get("reason")
        nanny = header.get("nanny")
        if isinstance(nanny, str) and isinstance(reason, str):
            if header.get("restarting", True):
                # (unless its replacement registered before this report arrived)
                self._nannies[nanny] = not any(
                    n == nanny and a != address for a, n in self._nanny_of.items())
            else:
                self._nannies.pop(nanny, None)
                self._gave_up.append(f"{address} died ({reason}) and its nanny gave up "
                                     "restarting it")
        if isinstance(address, str) and isinstance(reason, str):
            logger.info("worker %s died: %s (%s)", address, reason,
                        "restarting it" if header.get("restarting", True) else "not restarted")
        if isinstance(address, str) and isinstance(reason, str) and (
                address in self.state.workers or address in self.streams):
            self._death_reasons.setdefault(address, reason)
            event = self._death_reported.pop(address, None)
            if event is not None:
                event.set()
            worker_comm = self._comms.get(address)
            if worker_comm is not None:
                await worker_comm.close()
        await comm.send({"op": "ok"})
        await comm.close()
        self._check_workerless()

    def _check_workerless(self) -> None:
        """No worker left: fail what waits for one if none is coming back (every nanny that
        ran a worker has given up) or, with ``no_workers_timeout``, none came in time."""
        if self.state.workers or self.state.workerless is not None:
            return
        if self._workerless_since is None:
            self._workerless_since = time.monotonic()
        reason = None
        if self._gave_up and not any(self._nannies.values()):
            reason = "; ".join(self._gave_up[-3:])
        timeout = self.config.no_workers_timeout
        if reason is None and timeout is not None and \
                time.monotonic() - self._workerless_since > timeout and \
                any(ts.state in ("waiting", "queued") for ts in self.state.tasks.values()):
            reason = f"no worker joined the scheduler within {timeout} s"
        if reason is not None:
            logger.error("no worker left and none coming back: %s", reason)
            self._received = time.time()
            self._apply(self.state.no_workers, reason)

    async def _drop_worker(self, address: str, reason: str) -> None:
        stream = self.streams.pop(address, None)
        comm = self._comms.pop(address, None)
        self._last_seen.pop(address, None)
        if stream is not None:
            await stream.close()
        if comm is not None:
            await comm.close()
        if address in self._supervised and address not in self._leaving and \
                self.state.removal_is_final(address):
            # an error will name why it died, and its nanny will say: wait a moment for that
            # (otherwise its work is rescheduled at once; the report is only logged)
            event = self._death_reported.setdefault(address, asyncio.Event())
            if address not in self._death_reasons:
                try:
                    await asyncio.wait_for(event.wait(), 2 * self.config.memory_monitor_interval
                                           + 1.0)
                except asyncio.TimeoutError:
                    pass
        self._supervised.discard(address)
        self._nanny_of.pop(address, None)
        self._death_reported.pop(address, None)
        reason = self._death_reasons.pop(address, reason)
        if address in self.state.workers:
            if address in self._leaving:
                self._leaving.discard(address)
                reason = "closed by its owner"
                logger.info("worker %s left", address)
            else:
                logger.warning("worker %s lost: %s", address, reason)
            self._received = time.time()
            self._apply(self.state.remove_worker, address, reason)
        self._check_workerless()

    async def _serve_client(self, comm: Comm, header: dict[str, Any]) -> None:
        client_id = header.get("client") or f"client-{uuid.uuid4().hex}"
        if not isinstance(client_id, str) or client_id in self.streams:
            await comm.send({"op": "error", "message": "bad or duplicate client id"})
            await comm.close()
            return
        stream = BatchedStream(comm, self.config.batch_interval)
        self.streams[client_id] = stream
        self._comms[client_id] = comm
        await comm.send({"op": "registered", "client": client_id, "scheduler": self.address})
        stream.start()
        self._received = time.time()
        self._apply(self.state.add_client, client_id)
        logger.info("client %s connected from %s", client_id, comm.peer_address)
        try:
            while True:
                msg, frames = await comm.recv()
                self._received = time.time()
                with self.state.hold():
                    for sub, sub_frames in unbatch(msg, frames):
                        self._client_message(client_id, sub, sub_frames)
                self._route(self.state.flush())
        except CommClosedError:
            pass
        except (ProtocolError, ValueError) as exc:
            logger.error("client %s sent a bad message (%s); disconnecting it", client_id, exc)
            stream.send({"op": "error", "message": str(exc)})
        finally:
            self.streams.pop(client_id, None)
            self._comms.pop(client_id, None)
            await stream.close()
            await comm.close()
            self._received = time.time()
            self._apply(self.state.remove_client, client_id)
            self.recorder.activities.remove_client(client_id)
            logger.info("client %s disconnected", client_id)

    def _client_message(self, client_id: str, msg: dict[str, Any], frames: Sequence[Any]
                        ) -> None:
        op = check_message(msg, CLIENT_OPS)
        s = self.state
        if op == "update-graph":
            _check_graph_tasks(msg["tasks"], frames)
            self._apply(s.update_graph, client_id, msg["tasks"], msg["keys"])
        elif op == "release-keys":
            self._apply(s.release_keys, client_id, msg["keys"])
        elif op == "want-keys":
            self._apply(s.want_keys, client_id, msg["keys"])
        elif op == "cancel":
            self._apply(s.cancel, client_id, msg["keys"])
        elif op == "retry":
            self._apply(s.retry, client_id, msg["keys"])
        elif op == "scatter":
            self._apply(s.scatter, client_id, msg["who_has"], msg["nbytes"], msg["put"])
        elif op == "activity":
            self.recorder.activities.update(client_id, msg)
        elif op in ("who-has", "story", "pending", "info", "history", "dump-state"):
            self.streams[client_id].send({"op": "reply", "id": msg["id"],
                                          "result": self._query(op, msg)})

    def _query(self, op: str, msg: dict[str, Any]) -> Any:
        if op == "who-has":
            return self.state.who_has(msg["keys"])
        if op == "story":
            return [list(entry) for entry in self.state.story(msg["keys"])]
        if op == "pending":
            return self.state.pending(msg["keys"])
        if op == "history":
            return self.recorder.history(msg["since"])
        if op == "dump-state":
            from distml.diagnostics.cluster_state import scheduler_state
            return scheduler_state(self)
        return self.info()

    def info(self) -> dict[str, Any]:
        """A data-only summary of the cluster: workers, their load, task counts."""
        return {
            "address": self.address,
            "workers": {
                ws.address: {"name": ws.name, "nthreads": ws.nthreads,
                             "memory_limit": ws.memory_limit, "processing": len(ws.processing),
                             "keys": len(ws.has_what), "nbytes": ws.nbytes, "paused": ws.paused,
                             "memory": ws.metrics.get("rss", 0),
                             "spilled": ws.metrics.get("spilled", 0)}
                for ws in self.state.workers.values()
            },
            "tasks": self.state.task_counts(),
            "clients": sorted(self.state.clients),
            "dashboard": None if self.dashboard is None else {
                "scheme": self.dashboard.scheme, "port": self.dashboard.port},
        }

    # ------------------------------------------------------------------ periodic work
    async def _housekeeping(self) -> None:
        """Work stealing and lost-worker detection; the only place that looks at the clock."""
        tick = 0.1
        next_sweep = time.monotonic() + self.config.unclaimed_timeout / 2
        next_sample = 0.0
        while not self._closed.is_set():
            await asyncio.sleep(tick)
            self._received = time.time()
            if self._received >= next_sample:
                next_sample = self._received + MEMORY_SAMPLE_SECONDS
                self.recorder.sample_memory(self.state.workers.values(), self._received)
            self._apply(self.state.balance)
            self._check_workerless()
            if time.monotonic() > next_sweep:
                next_sweep = time.monotonic() + self.config.unclaimed_timeout / 2
                self._apply(self.state.sweep_unclaimed)
            deadline = time.monotonic() - self.config.worker_ttl
            for address, seen in list(self._last_seen.items()):
                if seen < deadline:
                    comm = self._comms.get(address)
                    logger.warning("worker %s missed heartbeats for %.1f s", address,
                                   self.config.worker_ttl)
                    if comm is not None:
                        await comm.close()
