"""A cluster on this machine: the scheduler in this process (on the shared event loop thread),
workers in their own processes, all on loopback, with a fresh secret of its own."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import psutil

from distml.config import Config, new_secret
from distml.errors import DistmlError
from distml.loop import shared_loop
from distml.nanny import WorkerSupervisor
from distml.scheduler.server import Scheduler

logger = logging.getLogger(__name__)


def parse_memory(value: int | float | str | None, n_workers: int = 1) -> int:
    """Bytes from ``4e9``, ``"4GB"``, ``"512 MiB"``; ``None``/``"auto"`` share the machine's
    memory between ``n_workers``; ``0`` means no limit."""
    if value is None or value == "auto":
        return psutil.virtual_memory().total // max(1, n_workers)
    if isinstance(value, (int, float)):
        return int(value)
    text = value.strip().replace(" ", "")
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 10**3, "mb": 10**6,
             "gb": 10**9, "tb": 10**12, "b": 1}
    lowered = text.lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            number = lowered[: -len(suffix)]
            break
    else:
        number, factor = lowered, 1
    try:
        return int(float(number) * factor)
    except ValueError:
        raise ValueError(f"cannot read a memory size from {value!r} (try '4GB' or '512MiB')") \
            from None


class LocalCluster:
    """Scheduler plus ``n_workers`` worker processes on loopback.

    ``n_workers`` defaults to the number of cores, with one thread each.
    """

    def __init__(self, n_workers: int | None = None, threads_per_worker: int | None = None,
                 memory_limit: int | str | None = None, config: Config | None = None,
                 start_timeout: float = 30.0):
        config = config or Config.load()
        if not config.secret:
            config = config.replace(secret=new_secret())
        self.config = config
        cores = os.cpu_count() or 1
        self.n_workers = cores if n_workers is None else n_workers
        if self.n_workers < 0:
            raise ValueError(f"n_workers must be >= 0, got {self.n_workers}")
        self.threads_per_worker = threads_per_worker or 1
        self.memory_limit = parse_memory(memory_limit, max(1, self.n_workers))
        self._loop = shared_loop()
        self.supervisors: list[WorkerSupervisor] = []
        self.scheduler: Scheduler | None = None
        started = time.perf_counter()
        self.scheduler = self._loop.run(self._start_scheduler())
        try:
            self._loop.run(self._start_workers(self.n_workers, start_timeout))
            self._loop.run(self.scheduler.dashboard_started())
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.perf_counter() - started
        logger.info("local cluster at %s with %d workers ready in %.2f s", self.scheduler_address,
                    self.n_workers, self.start_seconds)
        if self.scheduler.dashboard is not None:
            logger.info("dashboard: %s", self.dashboard_link)

    async def _start_scheduler(self) -> Scheduler:
        address = f"{self.config.scheme}://{self.config.host}:0"
        return await Scheduler(address, self.config).start()

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    def _supervisor(self, **options: Any) -> WorkerSupervisor:
        # Workers see the modules this process sees (scripts' folders, notebooks' paths), so
        # functions pickled by reference load there as they do here.
        paths = [p or os.getcwd() for p in sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))
        env.setdefault("DISTML_LOG_LEVEL", "WARNING")  # local workers speak up on trouble only
        env.update(self.config.to_env())  # e.g. memory thresholds given as keyword arguments
        memory_limit = options.get("memory_limit", self.memory_limit)
        args = ["--nthreads", str(options.get("nthreads", self.threads_per_worker)),
                "--memory-limit", str(memory_limit),
                "--name", f"worker-{len(self.supervisors)}", "--host", self.config.host]
        supervisor = WorkerSupervisor(self.scheduler_address, self.config, args,
                                      memory_limit=memory_limit, env=env)
        self.supervisors.append(supervisor)
        return supervisor

    async def _start_workers(self, n: int, timeout: float) -> None:
        """Start ``n`` workers at once and wait until all have joined the scheduler."""
        supervisors = [self._supervisor() for _ in range(n)]
        addresses = await asyncio.gather(*(s.start(timeout) for s in supervisors))
        deadline = time.monotonic() + timeout
        while not set(addresses) <= set(self.scheduler.state.workers):
            if time.monotonic() > deadline:
                raise DistmlError(f"workers did not join the scheduler within {timeout} s")
            await self.scheduler.worker_joined(0.05)

    def add_worker(self, timeout: float = 30.0) -> str:
        """Start one more worker; returns its address once it has joined."""
        before = len(self.supervisors)
        self._loop.run(self._start_workers(1, timeout))
        return self.supervisors[before].address

    def wait_for_workers(self, n: int, timeout: float = 30.0) -> None:
        async def wait() -> None:
            deadline = time.monotonic() + timeout
            while len(self.scheduler.state.workers) < n:
                if time.monotonic() > deadline:
                    raise DistmlError(f"only {len(self.scheduler.state.workers)} of {n} workers "
                                      f"joined within {timeout} s")
                await self.scheduler.worker_joined(0.05)
        self._loop.run(wait())

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL with its access token (None when the dashboard is off)."""
        dashboard = self.scheduler.dashboard if self.scheduler is not None else None
        return dashboard.link if dashboard is not None else None

    @property
    def workers(self) -> list[str]:
        return list(self.scheduler.state.workers)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers (terminate, then kill) and the scheduler."""
        if not self._loop.thread.is_alive():
            return
        if self.supervisors:
            async def stop_workers() -> None:
                await asyncio.gather(*(s.close(timeout) for s in self.supervisors))
            self._loop.run(stop_workers(), timeout=timeout + 5)
            self.supervisors.clear()
        if self.scheduler is not None:
            self._loop.run(self.scheduler.close(), timeout=timeout)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalCluster {self.scheduler_address} workers={len(self.supervisors)}>"
