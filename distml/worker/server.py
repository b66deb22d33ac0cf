"""The worker's I/O layer: a connection to the scheduler, a thread pool that runs tasks, a listener
that serves results to peers and clients, and fetches of inputs from peers.

Decisions (what runs next, what to fetch from whom) are made by :class:`WorkerStateMachine`; this
module carries them out and reports what happened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import time
from typing import Any, Sequence

import psutil

from distml.batched import BatchedStream, unbatch
from distml.comm import Comm, Listener, connect, parse_address
from distml.config import Config
from distml.errors import CommClosedError, ProtocolError
from distml.pool import ConnectionPool
from distml.protocol import payload, serialize
from distml.worker.context import close_worker_client
from distml.worker.runner import TaskRunner, encode_exception
from distml.worker.spill import SpillBuffer
from distml.worker.transfers import TransferMeter
from distml.worker.state import (Execute, Fetch, Forget, Instruction, Interrupt,
                                 SendToScheduler, WorkerStateMachine)

logger = logging.getLogger(__name__)


def pack_values(values: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """Serialize ``values`` into one message: keys, frame counts per key, and the frames."""
    return pack_frames({key: serialize.dumps(value) for key, value in values.items()})


def pack_frames(serialized: dict[str, list]) -> tuple[dict[str, Any], list]:
    """One message from already serialized values: keys, frame counts per key, the frames."""
    keys, counts, frames = [], [], []
    for key, parts in serialized.items():
        keys.append(key)
        counts.append(len(parts))
        frames.extend(parts)
    return {"keys": keys, "nframes": counts}, frames


def unpack_values(header: dict[str, Any], frames: list) -> dict[str, Any]:
    """Inverse of :func:`pack_values`."""
    keys, counts = header.get("keys"), header.get("nframes")
    if not isinstance(keys, list) or not isinstance(counts, list) or len(keys) != len(counts) \
            or sum(counts) != len(frames):
        raise ProtocolError("data message with inconsistent keys and frames")
    out, start = {}, 0
    for key, count in zip(keys, counts):
        out[key] = serialize.loads(frames[start:start + count])
        start += count
    return out


class Worker:
    """One worker process's runtime (it can also run inside another process, for tests)."""

    def __init__(self, scheduler_address: str, config: Config | None = None, nthreads: int = 1,
                 memory_limit: int = 0, name: str = "", host: str | None = None):
        self.config = config or Config.load()
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.name = name
        scheme = parse_address(scheduler_address)[0]
        self.listener = Listener(f"{scheme}://{host or self.config.host}:0", self._serve_peer,
                                 self.config)
        self.state: WorkerStateMachine | None = None
        target = int(memory_limit * self.config.memory_target_fraction)
        self.data = SpillBuffer(target, self.config.local_directory)
        self._process = psutil.Process()
        #: Highest resident memory the monitor saw, in bytes.
        self.peak_rss = 0
        self.payloads: dict[str, Any] = {}
        self.runner: TaskRunner | None = None
        self.pool = ConnectionPool(self.config)
        self.transfers = TransferMeter()
        self.stream: BatchedStream | None = None
        self._scheduler_comm: Comm | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closed = asyncio.Event()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        return self.listener.address

    async def start(self) -> "Worker":
        self._loop = asyncio.get_running_loop()
        await self.listener.start()
        self.state = WorkerStateMachine(self.nthreads, self.address, prefetch=self.nthreads)
        self.runner = TaskRunner(self.nthreads, self._loop, self._runner_events,
                                 self.config.inline_result_bytes, worker=self)
        await self._register(self.config.connect_timeout)
        self._spawn(self._scheduler_loop())
        self._spawn(self._heartbeat())
        if self.memory_limit:
            self._spawn(self._monitor_memory())
        if os.environ.get("DISTML_NANNY"):
            self._spawn(self._exit_with_nanny())
        logger.info("worker %s registered with %s", self.address, self.scheduler_address)
        return self

    async def _exit_with_nanny(self) -> None:
        """A supervised worker's stdin is a pipe from its nanny: end of file means the nanny
        (for a local cluster, the user's process) is gone, and nobody would stop this one."""
        reader = asyncio.StreamReader()
        await self._loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                           sys.stdin)
        while await reader.read(4096):
            pass
        logger.warning("worker %s: its nanny is gone; shutting down", self.address)
        await self.close()

    async def _register(self, timeout: float) -> None:
        """Connect to the scheduler and register, declaring the results held here (after a
        scheduler restart these are re-registered instead of recomputed)."""
        comm = await connect(self.scheduler_address, self.config, timeout=timeout)
        await comm.send({"op": "register-worker", "address": self.address,
                         "nthreads": self.nthreads, "memory_limit": self.memory_limit,
                         "name": self.name or self.address, "pid": os.getpid(),
                         "nanny": os.environ.get("DISTML_NANNY") or False,
                         "keys": dict(self.state.in_memory)})
        reply, _ = await comm.recv()
        if reply.get("op") != "registered":
            await comm.close()
            raise ProtocolError(f"scheduler refused registration: {reply.get('message')}")
        self._scheduler_comm = comm
        self.stream = BatchedStream(comm, self.config.batch_interval)
        self.stream.start()

    async def _reconnect(self) -> bool:
        """The scheduler went away: keep the data, drop the work, and register again when it
        is back (within ``scheduler_reconnect_timeout``)."""
        logger.warning("lost the scheduler at %s; reconnecting for up to %.0f s",
                       self.scheduler_address, self.config.scheduler_reconnect_timeout)
        await self.stream.close()
        self.payloads.clear()
        self._carry_out(self.state.forget_work())
        try:
            await self._register(self.config.scheduler_reconnect_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure here ends the worker
            logger.error("could not reconnect to the scheduler: %s", exc)
            return False
        logger.info("reconnected to %s with %d results", self.scheduler_address,
                    len(self.state.in_memory))
        return True

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True  # ``finished()`` returns only once everything below is done
        if self.stream is not None:
            self.stream.send({"op": "goodbye"})  # a planned exit, not a failure
            await self.stream.close()
        if self._scheduler_comm is not None:
            await self._scheduler_comm.close()
        self.listener.stop()
        await self.pool.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:  # close() may run inside one of them: let it finish
                task.cancel()
        if self.runner is not None:
            self.runner.stop()
        await asyncio.get_running_loop().run_in_executor(None, close_worker_client, self)
        self.data.close()
        self._closed.set()

    async def finished(self) -> None:
        await self._closed.wait()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ scheduler stream
    async def _scheduler_loop(self) -> None:
        try:
            while True:
                try:
                    msg, frames = await self._scheduler_comm.recv()
                except CommClosedError:
                    if self._closing or not await self._reconnect():
                        return
                    continue
                for sub, sub_frames in unbatch(msg, frames):
                    self._scheduler_message(sub, sub_frames)
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:
            logger.error("bad message from the scheduler (%s); shutting down", exc)
        finally:
            await self.close()

    def _scheduler_message(self, msg: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        op = msg["op"]
        sm = self.state
        if op == "compute":
            key = msg["key"]
            self.payloads[key] = task = payload.from_header(msg["payload"], frames)
            self._carry_out(sm.compute(key, task, msg["prio"], msg["deps"], msg.get("nbytes")))
        elif op == "free":
            for key in msg["keys"]:
                self.payloads.pop(key, None)
            self._carry_out(sm.free(msg["keys"]))
        elif op == "restore":
            key = msg["key"]
            try:
                self.data[key] = serialize.loads([msg["value"]])
            except Exception as exc:  # noqa: BLE001 - a peer fetching it falls back to the scheduler
                logger.error("could not load the scheduler's copy of %s: %s", key, exc)
                return
            self._carry_out(sm.restore(key, msg["nbytes"]))
        elif op == "confirm":
            self._carry_out(sm.confirm(msg["keys"], msg["put"]))
        elif op == "steal":
            out = sm.steal(msg["key"])
            if out[0].msg["ok"]:
                self.payloads.pop(msg["key"], None)
            self._carry_out(out)
        else:
            logger.error("unknown operation %r from the scheduler", op)

    def _carry_out(self, instructions: list[Instruction]) -> None:
        for inst in instructions:
            if isinstance(inst, SendToScheduler):
                self.stream.send(inst.msg)
            elif isinstance(inst, Execute):
                self._execute(inst.key)
            elif isinstance(inst, Fetch):
                self._spawn(self._fetch(inst.address, inst.keys))
            elif isinstance(inst, Forget):
                self.data.pop(inst.key, None)
            elif isinstance(inst, Interrupt):
                self.runner.interrupt(inst.key)

    # ------------------------------------------------------------------ execution
    def _execute(self, key: str) -> None:
        task = self.state.tasks[key]
        gone = [dep for dep in task.dependencies if dep not in self.data]
        if gone:
            logger.error("inputs %s of %s are no longer here; handing it back to the scheduler",
                         gone, key)
            self._carry_out(self.state.inputs_gone(key, gone))
            self.payloads.pop(key, None)
            return
        inputs = {dep: self.data[dep] for dep in task.dependencies}
        # kept until the task leaves the state machine: an interrupted run that the scheduler
        # wanted again meanwhile runs once more
        self.runner.submit(key, self.payloads[key], inputs)

    def _runner_events(self, events: list[tuple]) -> None:
        """Tasks started and finished in the threads since the last call. The scheduler hears
        which tasks started (so that only tasks really running on a worker that dies count
        against them) unless they also finished in the same batch."""
        finished = {event[1] for event in events if event[0] == "finished"}
        started = [event[1] for event in events
                   if event[0] == "started" and event[1] not in finished
                   and event[1] in self.state.tasks]
        if started:
            self.stream.send({"op": "started", "keys": started})
        instructions: list[Instruction] = self.state.tasks_started(started)
        for event in events:
            kind, key = event[0], event[1]
            if kind == "seceded":
                instructions += self.state.secede(key)
                continue
            if kind == "rejoined":
                instructions += self.state.rejoin(key)
                continue
            if kind != "finished":
                continue
            if event[2] == "interrupted":
                instructions += self.state.task_interrupted(key)
            elif event[2] == "ok":
                _, _, _, value, nbytes, duration, inline = event
                task = self.state.tasks.get(key)
                if task is not None and task.state != "cancelled":
                    self.data.put(key, value, nbytes)  # measured in the task's thread
                instructions += self.state.task_done(key, nbytes, duration, inline)
            else:
                _, _, _, exception, trace, text = event
                instructions += self.state.task_failed(key, exception, trace, text)
            if key not in self.state.tasks:  # over here: its payload (kept for a rerun) goes
                self.payloads.pop(key, None)
        self._carry_out(instructions)

    # ------------------------------------------------------------------ peers
    async def _fetch(self, address: str, keys: list[str]) -> None:
        started = time.perf_counter()
        try:
            header, frames = await self.pool.request(address, {"op": "get-data", "keys": keys})
            values = unpack_values(header, frames)
        except (OSError, CommClosedError, ProtocolError, asyncio.TimeoutError) as exc:
            logger.warning("fetching %d keys from %s failed: %s", len(keys), address, exc)
            self.pool.forget(address)
            self._carry_out(self.state.fetch_failed(address, keys))
            return
        except Exception as exc:  # noqa: BLE001 - a value that will not unpickle here
            logger.error("could not load data from %s: %s", address, exc)
            self._carry_out(self.state.fetch_failed(address, keys))
            return
        sizes = {}
        for key, value in values.items():
            sizes[key] = self.data.put(key, value)
        self.transfers.record(sum(sizes.values()), time.perf_counter() - started)
        missing = [k for k in keys if k not in values]
        out = self.state.fetch_done(address, sizes)
        if missing:
            out += self.state.fetch_failed(address, missing)
        self._carry_out(out)

    async def _serve_peer(self, comm: Comm) -> None:
        """Requests from peers and clients: get-data, put-data, run."""
        try:
            while True:
                header, frames = await comm.recv()
                op = header.get("op")
                if op == "get-data":
                    keys = header.get("keys")
                    if not isinstance(keys, list):
                        raise ProtocolError("get-data needs a list of keys")
                    found = {k: self.data[k] for k in keys if k in self.data}
                    reply, parts = pack_values(found)
                    await comm.send({"op": "data", **reply}, parts)
                elif op == "put-data":
                    put = header.get("put")
                    if not isinstance(put, str):
                        raise ProtocolError("put-data needs the scatter's id ('put')")
                    values = unpack_values(header, frames)
                    sizes = {k: self.data.put(k, v) for k, v in values.items()}
                    self._carry_out(self.state.data_put(sizes, put))
                    await comm.send({"op": "ok", "nbytes": sizes})
                elif op == "run":
                    await comm.send(await self._run_function(header, frames))
                elif op == "ping":
                    await comm.send({"op": "pong", "address": self.address})
                else:
                    raise ProtocolError(f"unknown operation {op!r}")
        except CommClosedError:
            pass
        except ProtocolError as exc:
            logger.warning("peer %s sent a bad request (%s); closing", comm.peer_address, exc)
            try:
                await comm.send({"op": "error", "message": str(exc)})
            except CommClosedError:
                pass
        finally:
            await comm.close()

    async def _run_function(self, header: dict[str, Any], frames: list) -> dict[str, Any]:
        """``client.run``: call a function here, outside the task system."""
        try:
            func, args, kwargs = serialize.loads(frames)
            if "distml_worker" in _parameters(func):
                kwargs = {**kwargs, "distml_worker": self}
            result = await asyncio.get_running_loop().run_in_executor(
                None, lambda: func(*args, **kwargs))
            return {"op": "result", "value": [bytes(f) for f in serialize.dumps(result)]}
        except Exception as exc:  # noqa: BLE001 - sent back to the caller
            blob, trace, text = encode_exception(exc)
            return {"op": "error", "exception": blob, "traceback": trace, "text": text}

    async def _heartbeat(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.config.heartbeat_interval)
            self.stream.send({"op": "heartbeat", "executing": self.runner.running(),
                              **self.memory_report(), **self.transfers.report()})

    def memory_report(self) -> dict[str, int]:
        return {"rss": self._process.memory_info().rss, "managed": self.data.fast_bytes,
                "spilled": self.data.spilled_bytes, "paused": int(self.state.paused)}

    async def _monitor_memory(self) -> None:
        """Keep resident memory under the limit: spill past the spill fraction, stop starting
        tasks past the pause fraction (and start again once memory falls)."""
        limit = self.memory_limit
        spill_at = limit * self.config.memory_spill_fraction
        target = limit * self.config.memory_target_fraction
        pause_at = limit * self.config.memory_pause_fraction
        while not self._closing:
            await asyncio.sleep(self.config.memory_monitor_interval)
            rss = self._process.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            if rss > spill_at:
                # spill oldest first, measuring as we go: freed memory may not show at once
                for key in list(self.data.fast)[: max(1, len(self.data.fast) // 2)]:
                    if rss <= target:
                        break
                    self.data.evict(key)
                    rss = self._process.memory_info().rss
            # Pausing helps only while there is something to spill or a task to finish; with
            # neither, it would wait forever (the nanny still guards the terminate fraction).
            paused = rss > pause_at and bool(self.data.fast or self.state.executing)
            if paused != self.state.paused:
                logger.warning("worker %s %s: %d MB resident of a %d MB limit", self.address,
                               "paused" if paused else "resumed", rss // 2**20, limit // 2**20)
                self.stream.send({"op": "paused", "paused": paused})
                self._carry_out(self.state.set_paused(paused))


def _parameters(func: Any) -> set[str]:
    try:
        return set(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return set()
