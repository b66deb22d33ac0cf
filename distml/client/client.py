"""The user's entry point: submit work, get futures, gather results.

``Client()`` starts a :class:`~distml.cluster.LocalCluster` on loopback and closes it on exit;
``Client("tcp://host:port")`` joins a running cluster. Methods are synchronous; the messaging runs
on a shared event loop thread (:mod:`distml.loop`). Graphs are built, checked and culled here, and
tasks are pickled here: the scheduler only ever sees opaque bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid

import xxhash
from typing import Any, Callable, Iterable, Mapping

from distml import graph
from distml.batched import BatchedStream, unbatch
from distml.client.future import (CANCELLED, ERROR, FINISHED, LOST, PENDING, Future,
                                  FutureState, wait)
from distml.comm import Comm, connect
from distml.config import Config
from distml.diagnostics.progress import GraphProgress
from distml.errors import CommClosedError, DistmlError, KeyLostError, ProtocolError, TimeoutError
from distml.inproc import InProcessComm
from distml.loop import shared_loop
from distml.pool import ConnectionPool
from distml.protocol import payload, serialize
from distml.worker.server import pack_frames, unpack_values

logger = logging.getLogger(__name__)

_default_client: "Client | None" = None
_default_lock = threading.Lock()


def default_client() -> "Client | None":
    """The most recently created client that is still open, if any."""
    client = _default_client
    return client if client is not None and client.status == "running" else None


def _funcname(func: Callable) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return "lambda" if name == "<lambda>" else name


def _token(frames: list, extra: Iterable[str] = ()) -> str:
    """A 128-bit content hash (xxh3: ~30 GB/s, so hashing scattered data costs little)."""
    h = xxhash.xxh3_128()
    for frame in frames:
        h.update(frame)
    for item in extra:
        h.update(item.encode())
    return h.hexdigest()


def _graph_message(tasks: dict[str, dict[str, Any]], keys: list[str], config: Config
                   ) -> tuple[dict[str, Any], list]:
    """An update-graph message: large payload parts (array arguments) travel as frames.

    Raises ``ValueError`` for a message the scheduler would refuse (see ``max_frame_bytes`` and
    ``max_header_bytes``), naming the limit, rather than letting it cut the connection."""
    frames: list = []
    wire, inline = {}, 0
    for key, spec in tasks.items():
        if payload.has_large_parts(spec["payload"]):
            spec = {**spec, "payload": payload.to_header(spec["payload"], frames)}
        wire[key] = spec
        inline += sum(len(part) for part in spec["payload"] if type(part) is not int)
    largest = max((memoryview(f).nbytes for f in frames), default=0)
    if largest > config.max_frame_bytes:
        raise ValueError(f"a task argument of {largest} bytes is larger than max_frame_bytes "
                         f"({config.max_frame_bytes}); pass it as a chunked array, or raise "
                         "DISTML_MAX_FRAME_BYTES for the scheduler, workers and client")
    if inline > config.max_header_bytes // 2:
        raise ValueError(f"{len(tasks)} tasks carry {inline} bytes of small arguments, over half "
                         f"of max_header_bytes ({config.max_header_bytes}); submit them in "
                         "several calls or scatter the data first")
    return {"op": "update-graph", "tasks": wire, "keys": keys}, frames


class Client:
    """Connect to a distml cluster (or start a local one) and run work on it."""

    def __init__(self, address: "str | Any | None" = None, *, n_workers: int | None = None,
                 threads_per_worker: int | None = None, memory_limit: int | str | None = None,
                 timeout: float = 30.0, set_as_default: bool = True, config: Config | None = None,
                 **config_options: Any):
        from distml.cluster import LocalCluster

        self.config = config or Config.load(**config_options)
        self.timeout = timeout
        self._loop = shared_loop()
        self._states: dict[str, FutureState] = {}
        self._refcounts: dict[str, int] = {}
        # Re-entrant: garbage collection can run a Future's __del__ (which releases) while
        # this thread holds either lock; a plain lock deadlocked there.
        self._refs_lock = threading.RLock()
        self._outgoing_lock = threading.RLock()
        self._released: list[str] = []
        self._connected = threading.Event()
        #: key -> the tasks of the submission that made it (shared between its keys).
        self._lineage: dict[str, dict[str, dict[str, Any]]] = {}
        self._codec = serialize.TaskCodec()
        self._unique_prefix = uuid.uuid4().hex[:16]
        self._unique_counter = itertools.count()
        self._replies: dict[int, asyncio.Future] = {}
        self._reply_ids = itertools.count()
        self._comm: Comm | InProcessComm | None = None
        self._stream: BatchedStream | None = None
        self._receiver: asyncio.Task | None = None
        #: Why the scheduler cut us off for a bad message, if it did.
        self._refusal: str | None = None
        self.status = "connecting"
        self.cluster = None
        self._own_cluster = False
        if address is None:
            self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                        memory_limit=memory_limit, config=self.config)
            self._own_cluster = True
            address = self.cluster.scheduler_address
            self.config = self.cluster.config
        elif isinstance(address, LocalCluster):
            self.cluster = address
            self.config = address.config
            address = address.scheduler_address
        elif n_workers is not None or threads_per_worker is not None:
            raise ValueError("n_workers and threads_per_worker start a local cluster; they cannot "
                             "be combined with the address of a running one")
        if not self.config.secret:
            raise ValueError("no shared secret: pass secret=, set DISTML_SECRET, or use Client() "
                             "for a local cluster")
        self.scheduler_address: str = address
        self.pool = ConnectionPool(self.config)
        try:
            self.id = self._loop.run(self._connect(), timeout=timeout + 5)
        except BaseException:
            if self._own_cluster:
                self.cluster.close()
            raise
        self.status = "running"
        self._connected.set()
        if set_as_default:
            global _default_client
            with _default_lock:
                _default_client = self

    # ------------------------------------------------------------------ connection
    async def _connect(self, client_id: str | None = None,
                       timeout: float | None = None) -> str:
        scheduler = getattr(self.cluster, "scheduler", None)
        if scheduler is not None and scheduler.address == self.scheduler_address:
            comm = scheduler.connect_in_process()  # a local cluster's, on this loop
        else:
            comm = await connect(self.scheduler_address, self.config,
                                 timeout=self.timeout if timeout is None else timeout)
        await comm.send({"op": "register-client",
                         "client": client_id or f"client-{uuid.uuid4().hex[:12]}"})
        reply, _ = await comm.recv()
        if reply.get("op") != "registered":
            await comm.close()
            raise ProtocolError(f"scheduler refused the client: {reply.get('message')}")
        self._comm = comm
        self._stream = BatchedStream(comm, self.config.batch_interval)
        self._stream.start()
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.get_running_loop().create_task(self._receive())
        return reply["client"]

    async def _receive(self) -> None:
        try:
            while True:
                try:
                    msg, _ = await self._comm.recv()
                except CommClosedError:
                    # a scheduler that refused our message would refuse it again: no resubmit
                    if self.status != "running" or self._refusal or not await self._reconnect():
                        return
                    continue
                for sub, _ in unbatch(msg):
                    self._handle(sub)
        finally:
            if self.status == "running":
                self.status = "disconnected"
            reason = (f"the scheduler refused a message from this client: {self._refusal}"
                      if self._refusal else f"the connection to the scheduler at "
                                            f"{self.scheduler_address} was lost")
            for state in list(self._states.values()):
                if not state.done:
                    state.finish(LOST, text=reason)
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(CommClosedError("scheduler connection closed"))

    async def _reconnect(self) -> bool:
        """The scheduler went away: connect again when it is back (same address), let its
        workers re-register what they kept, and resubmit what our futures need, so only lost
        results are computed again."""
        timeout = self.config.scheduler_reconnect_timeout
        logger.warning("lost the scheduler at %s; reconnecting for up to %.0f s",
                       self.scheduler_address, timeout)
        self.status = "reconnecting"
        self._connected.clear()
        await self._stream.close()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(CommClosedError("scheduler connection closed"))
        try:
            await self._connect(self.id, timeout)
            await self._settle()
        except Exception as exc:  # noqa: BLE001 - any failure: the futures are lost
            logger.error("could not reconnect to %s: %s", self.scheduler_address, exc)
            self.status = "running"  # lets _receive's cleanup mark the futures lost
            self._connected.set()
            return False
        with self._refs_lock:
            keys = list(self._states)
            tasks: dict[str, dict[str, Any]] = {}
            for key in keys:
                tasks.update(self._lineage.get(key, {}))
        self._stream.send(*_graph_message(tasks, keys, self.config))
        self.status = "running"
        self._connected.set()
        logger.info("reconnected to %s; resubmitted %d tasks for %d futures",
                    self.scheduler_address, len(tasks), len(keys))
        return True

    async def _info_inline(self) -> dict[str, Any]:
        """Ask the scheduler for ``info`` from inside the receiving task (which therefore reads
        the reply itself, handling whatever else arrives first)."""
        request_id = next(self._reply_ids)
        self._stream.send({"op": "info", "id": request_id})
        while True:
            msg, _ = await self._comm.recv()
            for sub, _ in unbatch(msg):
                if sub.get("op") == "reply" and sub.get("id") == request_id:
                    return sub["result"]
                self._handle(sub)

    async def _settle(self, quiet: float = 0.5, limit: float = 5.0) -> None:
        """Wait until workers stop joining a restarted scheduler (or ``limit`` passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        count, stable_since = -1, loop.time()
        while loop.time() < deadline:
            now = len((await self._info_inline())["workers"])
            if now != count or now == 0:
                count, stable_since = now, loop.time()
            elif loop.time() - stable_since >= quiet:
                return
            await asyncio.sleep(0.1)

    def _handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "reply":
            reply = self._replies.pop(msg.get("id"), None)
            if reply is not None and not reply.done():
                reply.set_result(msg.get("result"))
            return
        if op == "error":
            self._refusal = str(msg.get("message"))
            logger.error("the scheduler refused a message from this client: %s", self._refusal)
            return
        state = self._states.get(msg.get("key"))
        if state is None:
            return
        if op == "key-done":
            state.finish(FINISHED, workers=msg.get("workers") or [], value=msg.get("value"))
        elif op == "key-erred":
            if msg.get("kind") == "lost":
                state.finish(LOST, text=msg.get("text", ""))
            else:
                state.finish(ERROR, exception=msg.get("exception"),
                             traceback=msg.get("traceback"), text=msg.get("text", ""),
                             erred_key=msg.get("erred_key"), kind=msg.get("kind", "task"))
        elif op == "key-cancelled":
            state.finish(CANCELLED)
        elif op == "key-recomputing":
            state.reset()

    def _send(self, msg: dict[str, Any], frames: list | None = None) -> None:
        """Queue ``msg`` (with ``frames``) for the scheduler; safe from any thread, order
        preserved (releases of futures dropped before this call go out before it)."""
        with self._outgoing_lock:
            self._queue_releases()
            self._loop.call_soon(self._stream.send, msg, frames or ())

    def _queue_releases(self) -> None:
        """Send the keys released so far as one message (called holding the outgoing lock)."""
        if self._released:
            keys, self._released = self._released, []
            self._loop.call_soon(self._stream.send, {"op": "release-keys", "keys": keys})

    def _flush_releases(self) -> None:
        with self._outgoing_lock:
            self._queue_releases()

    async def _request(self, msg: dict[str, Any]) -> Any:
        request_id = next(self._reply_ids)
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        self._stream.send({**msg, "id": request_id})
        return await asyncio.wait_for(reply, self.timeout)

    def _sync(self, coro, timeout: float | None = None):
        if self.status not in ("running", "reconnecting"):
            coro.close()
            raise DistmlError(f"client is {self.status}")
        return self._loop.run(coro, timeout)

    def _wait_connected(self) -> None:
        """Hold new submissions while reconnecting, so they reach the new scheduler after the
        resubmitted graphs they may depend on."""
        if self.status == "reconnecting" and not self._connected.wait(
                self.config.scheduler_reconnect_timeout + 10):
            raise DistmlError("the scheduler did not come back")
        if self.status != "running":
            raise DistmlError(f"client is {self.status}")

    # ------------------------------------------------------------------ references
    def _acquire(self, key: str) -> FutureState:
        with self._refs_lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = FutureState(key)
            self._refcounts[key] = self._refcounts.get(key, 0) + 1
            return state

    def _release(self, key: str) -> None:
        with self._refs_lock:
            count = self._refcounts.get(key, 0) - 1
            if count > 0:
                self._refcounts[key] = count
                return
            self._refcounts.pop(key, None)
            self._states.pop(key, None)
            self._lineage.pop(key, None)
        if self.status != "running":
            return
        # Dropping 10,000 futures makes one message, not 10,000.
        with self._outgoing_lock:
            self._released.append(key)
            first = len(self._released) == 1
        if first:
            self._loop.loop.call_soon_threadsafe(self._flush_releases)

    # ------------------------------------------------------------------ submitting work
    def _unique_token(self) -> str:
        """A key part no other submission uses (for ``pure=False``): cheaper than a uuid each."""
        return f"{self._unique_prefix}{next(self._unique_counter):x}"

    def _as_ref(self, obj: Any) -> str | None:
        if isinstance(obj, Future):
            if obj.client is not self:
                raise ValueError(f"future {obj.key!r} belongs to another client")
            return obj.key
        return None

    def _prepare(self, func: Callable, args: tuple, kwargs: dict, key: str | None, pure: bool,
                 ) -> tuple[str, dict[str, Any]]:
        if not callable(func):
            raise TypeError(f"submit needs a callable, got {type(func).__name__}")
        task, deps = graph.to_task(func, args, kwargs, self._as_ref)
        payload = self._codec.dumps(task.func, task.args, task.kwargs)
        if key is None:
            token = _token(payload, sorted(deps)) if pure else self._unique_token()
            key = f"{_funcname(func)}-{token}"
        return key, {"payload": payload, "deps": sorted(deps), "prio": 0}

    def submit(self, func: Callable, *args: Any, key: str | None = None, pure: bool = True,
               retries: int = 0, **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker. Futures among the arguments are replaced by
        their values, fetched on the worker. Same function and arguments give the same key (and
        one computation) unless ``pure=False``."""
        key, spec = self._prepare(func, args, kwargs, key, pure)
        spec["retries"] = retries
        return self._submit_tasks({key: spec}, [key])[0]

    def map(self, func: Callable, *iterables: Iterable, key: str | list[str] | None = None,
            pure: bool = True, retries: int = 0, **kwargs: Any) -> list[Future]:
        """``submit(func, *items)`` for each tuple of items from ``iterables``, in one message."""
        columns = [list(it) for it in iterables]
        if not columns:
            raise TypeError("map needs at least one iterable")
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"map: iterables have different lengths {[len(c) for c in columns]}")
        n = len(columns[0])
        if isinstance(key, list) and len(key) != n:
            raise ValueError(f"map: {len(key)} keys given for {n} tasks")
        tasks: dict[str, dict[str, Any]] = {}
        keys = []
        for i, args in enumerate(zip(*columns)):
            task_key = key[i] if isinstance(key, list) else None
            k, spec = self._prepare(func, args, kwargs, task_key, pure)
            if isinstance(key, str):
                k = f"{key}-{k.rsplit('-', 1)[1]}"
            spec["retries"] = retries
            spec["prio"] = i
            tasks[k] = spec
            keys.append(k)
        return self._submit_tasks(tasks, keys)

    def _submit_tasks(self, tasks: dict[str, dict[str, Any]], keys: list[str]) -> list[Future]:
        self._wait_connected()
        message = _graph_message(tasks, keys, self.config)
        futures = [Future(k, self) for k in keys]
        with self._refs_lock:
            for key in keys:  # kept to resubmit if the scheduler restarts
                self._lineage[key] = tasks
        self._send(*message)
        return futures

    def get(self, dsk: Mapping, keys: Any, timeout: float | None = None) -> Any:
        """Compute a raw graph in Dask's format (``{"x": 1, "y": (inc, "x")}``) and return the
        values of ``keys`` (a key, or a nested list of keys)."""
        futures = self._submit_graph(dsk, keys)
        return self.gather(futures, timeout=timeout)

    def _submit_graph(self, dsk: Mapping, keys: Any, submitted: list | None = None) -> Any:
        """Submit ``dsk`` and return futures shaped like ``keys`` (the keys of the tasks sent
        are added to ``submitted``, when given).

        Futures may stand in the graph: as arguments (their values are used) or as the value of
        their own key (a result already on the cluster, as in a persisted collection)."""
        held = {graph.wire_key(k) for k, v in dsk.items()
                if isinstance(v, Future) and v.key == graph.wire_key(k)}
        tasks = graph.normalize_graph(dsk, self._as_ref)
        for k in held:  # already on the cluster: referenced, not recomputed
            del tasks[k]
        flat: list = []
        graph.flatten_keys(keys, flat)
        wanted = [graph.wire_key(k) for k in flat]
        deps = {k: d for k, (_, d) in tasks.items()}
        external = held | {
            d for ds in deps.values() for d in ds if d not in deps}
        missing = [k for k in wanted if k not in deps and k not in external]
        if missing:
            raise graph.GraphError(f"requested key(s) not in the graph: {missing[:5]}")
        needed = graph.cull(deps, [k for k in wanted if k in deps])
        sub = {k: deps[k] for k in needed}
        graph.check_graph(sub, external & set(self._states))
        priorities = graph.order(sub)
        specs = {}
        for k in needed:
            task, _ = tasks[k]
            specs[k] = {"payload": self._codec.dumps(task.func, task.args, task.kwargs),
                        "deps": sorted(deps[k]), "prio": priorities[k]}
        if submitted is not None:
            submitted.extend(specs)
        flat = self._submit_tasks(specs, wanted)
        by_key = dict(zip(wanted, flat))
        return _shape_like(keys, lambda k: by_key[graph.wire_key(k)])

    # ------------------------------------------------------------------ collections
    def compute(self, collections: Any, sync: bool = False, timeout: float | None = None) -> Any:
        """Start computing a collection (anything with ``__distml_graph__``/``__distml_keys__``/
        ``__distml_finalize__``), or several in a list. Returns futures of the finished values,
        or the values themselves with ``sync=True``."""
        single = not isinstance(collections, (list, tuple))
        items = [collections] if single else list(collections)
        submitted: list[str] = []
        futures = [self.submit(_finalize, item.__distml_finalize__,
                               self._submit_graph(item.__distml_graph__(),
                                                  item.__distml_keys__(), submitted))
                   if hasattr(item, "__distml_graph__") else item for item in items]
        if sync:  # a bar over the graph's tasks on an interactive terminal
            with GraphProgress(self, submitted):
                futures = self.gather(futures, timeout=timeout)
        return futures[0] if single else futures

    def persist(self, collections: Any) -> Any:
        """Start computing collections and return them rebuilt on the futures of their keys, so
        later work starts from results held on the workers."""
        single = not isinstance(collections, (list, tuple))
        items = [collections] if single else list(collections)
        out = [item.__distml_persist__(self._submit_graph(item.__distml_graph__(),
                                                          item.__distml_keys__()))
               for item in items]
        return out[0] if single else out

    # ------------------------------------------------------------------ results
    def gather(self, futures: Any, errors: str = "raise", timeout: float | None = None) -> Any:
        """Values of ``futures`` (a future, or a list/tuple/dict nesting of them), fetched
        directly from the workers. ``errors="skip"`` leaves out failed ones."""
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        flat = [f for f in _flatten_futures(futures)]
        if self.status == "disconnected" and errors == "raise":
            # the connection is gone for good: unfinished futures were marked lost, with why
            failed = next((f._state for f in flat if f._state.status not in (PENDING, FINISHED)),
                          None)
            if failed is not None:
                raise failed.error()
        values = self._sync(self._gather(flat, errors, timeout), None)
        return _shape_like(futures, lambda f: values.get(f.key, _SKIPPED), futures_mode=True)

    async def _gather(self, futures: list[Future], errors: str, timeout: float | None
                      ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        states = {f.key: f._state for f in futures}
        values: dict[str, Any] = {}
        while True:
            pending = [s for k, s in states.items() if k not in values]
            if not pending:
                return values
            for state in pending:
                await self._wait_state(state, deadline)
            todo: dict[str, list[str]] = {}
            for state in pending:
                if not state.done:
                    continue  # lost and being recomputed since we waited: wait again
                if state.status != FINISHED:
                    if errors == "raise":
                        raise state.error()
                    values[state.key] = _SKIPPED
                    continue
                if state.value is not None:
                    values[state.key] = serialize.loads([state.value])
                elif state.workers:
                    todo.setdefault(state.workers[0], []).append(state.key)
            results = await asyncio.gather(*(self._fetch(w, ks) for w, ks in todo.items()))
            lost = []
            for got, (worker, keys) in zip(results, todo.items()):
                values.update(got)
                lost.extend(k for k in keys if k not in got)
            if lost:
                await self._refresh_holders([states[k] for k in lost])
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"gather did not finish within {timeout} s")

    async def _wait_state(self, state: FutureState, deadline: float | None) -> None:
        if state.done:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        state.on_done(lambda: loop.call_soon_threadsafe(
            lambda: done.done() or done.set_result(None)))
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(done, left)
        except asyncio.TimeoutError:
            raise TimeoutError(f"key {state.key!r} did not finish in time") from None

    async def _fetch(self, worker: str, keys: list[str]) -> dict[str, Any]:
        try:
            header, frames = await self.pool.request(worker, {"op": "get-data", "keys": keys})
            return unpack_values(header, frames)
        except (OSError, CommClosedError, ProtocolError) as exc:
            logger.info("could not fetch from %s (%s); asking the scheduler", worker, exc)
            self.pool.forget(worker)
            return {}

    async def _refresh_holders(self, states: list[FutureState]) -> None:
        who_has = await self._request({"op": "who-has", "keys": [s.key for s in states]})
        for state in states:
            holders = who_has.get(state.key) or []
            if holders:
                state.workers = holders
            elif state.status == FINISHED:
                state.reset()  # being recomputed; the scheduler will say when it is done again

    # ------------------------------------------------------------------ data placement
    def scatter(self, data: Any, workers: list[str] | None = None, broadcast: bool = False,
                hash: bool = True) -> Any:
        """Place local data on workers and return futures to it (same shape as ``data``: a
        single object, list, or dict). ``broadcast=True`` puts a copy on every worker."""
        if isinstance(data, dict):
            keys_values = list(data.items())
        elif isinstance(data, (list, tuple)):
            keys_values = [(None, v) for v in data]
        else:
            keys_values = [(None, data)]
        named: dict[str, list] = {}  # key -> serialized frames
        order: list[str] = []
        for key, value in keys_values:
            frames = serialize.dumps(value)
            if key is None:
                token = _token(frames) if hash else uuid.uuid4().hex
                key = f"{type(value).__name__}-{token}"
            wire = graph.wire_key(key)
            named[wire] = frames
            order.append(wire)
        futures = [Future(k, self) for k in order]  # before the scheduler can answer
        self._sync(self._scatter(named, workers, broadcast), self.timeout * 4)
        self._sync(self._wait_all([f._state for f in futures]), self.timeout)
        if isinstance(data, dict):
            return dict(zip(data, futures))
        if isinstance(data, (list, tuple)):
            return futures
        return futures[0]

    async def _wait_all(self, states: list[FutureState]) -> None:
        for state in states:
            await self._wait_state(state, None)

    async def _scatter(self, named: dict[str, list], workers: list[str] | None,
                       broadcast: bool) -> None:
        targets = workers or sorted((await self._request({"op": "info"}))["workers"])
        if not targets:
            raise DistmlError("no workers to scatter to")
        plan: dict[str, dict[str, Any]] = {}
        for i, (key, value) in enumerate(named.items()):
            chosen = targets if broadcast else [targets[i % len(targets)]]
            for worker in chosen:
                plan.setdefault(worker, {})[key] = value
        who_has: dict[str, list[str]] = {}
        nbytes: dict[str, int] = {}
        put_id = self._unique_token()  # the scheduler confirms this put to the workers

        async def put(worker: str, serialized: dict[str, list]) -> None:
            header, frames = pack_frames(serialized)
            reply, _ = await self.pool.request(worker, {"op": "put-data", "put": put_id,
                                                        **header}, frames)
            if reply.get("op") != "ok":
                raise DistmlError(f"worker {worker} refused data: {reply.get('message')}")
            for key, size in reply["nbytes"].items():
                who_has.setdefault(key, []).append(worker)
                nbytes[key] = size

        await asyncio.gather(*(put(w, v) for w, v in plan.items()))
        self._stream.send({"op": "scatter", "who_has": who_has, "nbytes": nbytes,
                           "put": put_id})

    # ------------------------------------------------------------------ control
    def cancel(self, futures: Iterable[Future]) -> None:
        """Stop computing ``futures`` (running tasks' results are discarded)."""
        keys = [f.key for f in _flatten_futures(futures)]
        self._send({"op": "cancel", "keys": keys})

    def retry(self, futures: Iterable[Future]) -> None:
        """Run failed futures (and failed tasks they depend on) again."""
        states = [f._state for f in _flatten_futures(futures)]
        for state in states:
            if state.status == ERROR:
                state.reset()
        self._send({"op": "retry", "keys": [s.key for s in states]})

    def run(self, func: Callable, *args: Any, workers: list[str] | None = None,
            **kwargs: Any) -> dict[str, Any]:
        """Call ``func(*args, **kwargs)`` once on every worker (outside the task system);
        results by worker address. An exception on any worker is raised here. A function with
        a ``distml_worker`` parameter receives the worker object (for inspection)."""
        frames = serialize.dumps((func, args, kwargs))
        return self._sync(self._run(frames, workers), self.timeout * 4)

    async def _run(self, frames: list, workers: list[str] | None) -> dict[str, Any]:
        targets = workers or sorted((await self._request({"op": "info"}))["workers"])
        replies = await asyncio.gather(*(self.pool.request(w, {"op": "run"}, frames)
                                         for w in targets))
        out = {}
        for worker, (reply, _) in zip(targets, replies):
            if reply.get("op") == "error":
                state = FutureState(f"run-{worker}")
                state.exception, state.traceback = reply.get("exception"), reply.get("traceback")
                state.text = reply.get("text", "")
                raise state.error()
            out[worker] = serialize.loads(reply["value"])
        return out

    def who_has(self, futures: Iterable[Future] | None = None) -> dict[str, list[str]]:
        keys = list(self._states) if futures is None else [f.key for f in
                                                           _flatten_futures(futures)]
        return self._sync(self._request({"op": "who-has", "keys": keys}), self.timeout)

    def story(self, *keys_or_futures: Any) -> list[tuple[str, str, str, str]]:
        """Every recorded state transition of these keys: (key, from, to, cause)."""
        keys = [k.key if isinstance(k, Future) else graph.wire_key(k) for k in keys_or_futures]
        entries = self._sync(self._request({"op": "story", "keys": keys}), self.timeout)
        return [tuple(e) for e in entries]

    def scheduler_info(self) -> dict[str, Any]:
        return self._sync(self._request({"op": "info"}), self.timeout)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL with its access token (None if the scheduler serves none)."""
        from distml.dashboard.access import link_for
        return link_for(self.scheduler_address, self.scheduler_info().get("dashboard"),
                        self.config.secret)

    def dump_cluster_state(self, path: Any) -> Any:
        """Write what the scheduler and every worker know to ``path`` (JSON, for post-mortems);
        returns the path."""
        from distml.diagnostics.cluster_state import dump_cluster_state
        return dump_cluster_state(self, path)

    def nthreads(self) -> dict[str, int]:
        return {a: w["nthreads"] for a, w in self.scheduler_info()["workers"].items()}

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> None:
        async def poll() -> None:
            while len((await self._request({"op": "info"}))["workers"]) < n_workers:
                await asyncio.sleep(0.05)
        self._sync(asyncio.wait_for(poll(), timeout), None)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Disconnect (the scheduler releases this client's keys) and stop an owned cluster."""
        global _default_client
        if self.status in ("closed", "closing"):
            return
        self.status = "closing"

        async def shutdown() -> None:
            if self._stream is not None:
                await self._stream.close()
            if self._comm is not None:
                await self._comm.close()
            if self._receiver is not None:
                await asyncio.gather(self._receiver, return_exceptions=True)
            await self.pool.close()

        try:
            self._loop.run(shutdown(), timeout=10)
        finally:
            self.status = "closed"
            if self._own_cluster:
                self.cluster.close()
            with _default_lock:
                if _default_client is self:
                    _default_client = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.scheduler_address} {self.status}>"


class _Skipped:
    def __repr__(self) -> str:
        return "<skipped>"


_SKIPPED = _Skipped()


def _finalize(finalize: Callable[[Any], Any], values: Any) -> Any:
    return finalize(values)


def _flatten_futures(obj: Any) -> list[Future]:
    if isinstance(obj, Future):
        return [obj]
    if isinstance(obj, (list, tuple, set)):
        return [f for sub in obj for f in _flatten_futures(sub)]
    if isinstance(obj, dict):
        return [f for sub in obj.values() for f in _flatten_futures(sub)]
    return []


def _shape_like(template: Any, leaf: Callable[[Any], Any], futures_mode: bool = False) -> Any:
    """Rebuild ``template``'s list/tuple/dict nesting with ``leaf`` applied to its leaves."""
    if isinstance(template, list):
        out = [_shape_like(t, leaf, futures_mode) for t in template]
        return [v for v in out if v is not _SKIPPED]
    if futures_mode and isinstance(template, tuple):
        return tuple(_shape_like(t, leaf, futures_mode) for t in template)
    if futures_mode and isinstance(template, dict):
        return {k: _shape_like(v, leaf, futures_mode) for k, v in template.items()}
    if futures_mode and not isinstance(template, Future):
        return template
    return leaf(template)


__all__ = ["Client", "Future", "wait", "default_client", "KeyLostError"]
