"""Supervision of worker processes: restart a worker that dies or outgrows its memory, and tell
the scheduler why it died, so that the error of a task that keeps killing workers says so.

``WorkerSupervisor`` watches one worker process. A local cluster supervises its workers from its
own event loop (no extra process); ``distml worker`` runs a small nanny process that supervises
one worker (``--no-nanny`` runs the worker directly).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid

import psutil

from distml.comm import connect
from distml.config import Config
from distml.errors import DistmlError
from distml.worker.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

logger = logging.getLogger(__name__)

ADDRESS_LINE = "distml worker at "
#: Seconds after a worker starts before the nanny prepares its spare: the spare's start-up
#: (about 0.2 s of CPU, mostly imports) then does not compete with the recovery that a
#: replacement worker is usually part of.
SPARE_DELAY = 1.0

#: Quick deaths in a row after which a worker is no longer restarted.
MAX_QUICK_DEATHS = 3
QUICK = 2.0


def worker_process_environment(args: list[str]) -> dict[str, str]:
    """Settings a worker process needs that must be in place before Python starts.

    - numpy's BLAS gets as many threads as the worker has task threads: otherwise every task
      thread's matrix product starts a thread per core, and on a small machine they fight.
    - glibc's mmap and trim thresholds are fixed (:mod:`distml.worker.allocator`): mid-size
      work buffers come from the heap and stay there, results of several MiB have their own
      mappings.
    """
    nthreads = args[args.index("--nthreads") + 1] if "--nthreads" in args else "1"
    env = {name: nthreads for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                       "MKL_NUM_THREADS")}
    env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    env["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
    return env


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class WorkerSupervisor:
    """Start a worker process and keep one running until :meth:`close`."""

    def __init__(self, scheduler_address: str, config: Config, args: list[str],
                 memory_limit: int = 0, restart: bool = True, env: dict[str, str] | None = None):
        self.scheduler_address = scheduler_address
        self.config = config
        self.args = args
        self.memory_limit = memory_limit
        self.restart = restart
        #: Names this nanny to the scheduler (its workers register with it), so that the
        #: scheduler knows whether a replacement is coming when a worker dies.
        self.id = f"nanny-{uuid.uuid4().hex}"
        self.env = dict(env or os.environ, DISTML_SECRET=config.secret or "",
                        DISTML_NANNY=self.id)
        #: A started, idle worker process and its spill folder (``Config.worker_spare``).
        self._spare: tuple[asyncio.subprocess.Process, str] | None = None
        self._spare_task: asyncio.Task | None = None
        self._closed = asyncio.Event()
        for name, value in worker_process_environment(args).items():
            self.env.setdefault(name, value)
        self.process: asyncio.subprocess.Process | None = None
        self.address: str | None = None
        self.restarts = 0
        self._started_at = 0.0
        self._quick_deaths = 0
        self._closing = False
        self._kill_reason: str | None = None
        self._watcher: asyncio.Task | None = None
        self._spill_directory: str | None = None
        self.stopped = asyncio.Event()

    async def start(self, timeout: float = 30.0) -> str:
        """Start the worker; returns its address once it is listening."""
        self._started_at = time.monotonic()
        self._kill_reason = None
        # a fresh spill folder per worker process, removed when that process ends: a killed
        # worker cannot clean up after itself
        self._remove_spill_directory()
        spare = self._take_spare()
        if spare is not None:
            self.process, self._spill_directory = spare
            self.process.stdin.write(b"start\n")
        else:
            self.process, self._spill_directory = await self._launch()
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            raise DistmlError(f"worker did not start within {timeout} s") from None
        text = line.decode(errors="replace").strip()
        if not text.startswith(ADDRESS_LINE):
            code = await self.process.wait()
            raise DistmlError(f"worker process {describe_exit(code)} while starting")
        self.address = text[len(ADDRESS_LINE):]
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        if self.config.worker_spare and (self._spare_task is None or self._spare_task.done()):
            self._spare_task = asyncio.get_running_loop().create_task(self._prepare_spare())
        return self.address

    async def _launch(self, spare: bool = False) -> tuple[asyncio.subprocess.Process, str]:
        """Start a worker process (a spare waits for a line on stdin before it joins), with
        a spill folder of its own, removed when that process ends: a killed worker cannot
        clean up after itself."""
        directory = tempfile.mkdtemp(prefix="distml-worker-", dir=self.config.local_directory)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distml", "worker", self.scheduler_address, "--no-nanny",
            *self.args, *(["--spare"] if spare else []),
            env=dict(self.env, DISTML_LOCAL_DIRECTORY=directory),
            stdin=asyncio.subprocess.PIPE,  # closes when we die
            stdout=asyncio.subprocess.PIPE)
        return process, directory

    async def _prepare_spare(self) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), SPARE_DELAY)
            return
        except asyncio.TimeoutError:
            pass
        if self._closing or self._spare is not None:
            return
        try:
            spare = await self._launch(spare=True)
        except OSError as exc:
            logger.warning("could not start a spare worker process: %s", exc)
            return
        if self._closing:
            await _stop(spare[0], 5.0)
            shutil.rmtree(spare[1], ignore_errors=True)
            return
        self._spare = spare

    def _take_spare(self) -> tuple[asyncio.subprocess.Process, str] | None:
        """The spare, if one is ready and alive."""
        spare, self._spare = self._spare, None
        if spare is not None and spare[0].returncode is not None:
            logger.warning("the spare worker process %s; starting a new one",
                           describe_exit(spare[0].returncode))
            shutil.rmtree(spare[1], ignore_errors=True)
            return None
        return spare

    async def _watch(self) -> None:
        try:
            while not self._closing:
                proc = self.process
                memory = asyncio.get_running_loop().create_task(self._watch_memory(proc))
                try:
                    await proc.wait()
                finally:
                    memory.cancel()
                if self._closing:
                    break
                await self._died(self._kill_reason or describe_exit(proc.returncode))
        finally:
            self.stopped.set()

    async def _watch_memory(self, proc: asyncio.subprocess.Process) -> None:
        """Check the worker's resident memory every ``memory_monitor_interval`` while it runs
        (one psutil handle per process: making one reads /proc, as does each check)."""
        if not self.memory_limit:
            return
        try:
            process = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while self._kill_reason is None:
            await asyncio.sleep(self.config.memory_monitor_interval)
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                return
            if rss > self.memory_limit * self.config.memory_terminate_fraction:
                self._kill_for_memory(proc, rss)

    def _kill_for_memory(self, proc: asyncio.subprocess.Process, rss: int) -> None:
        reason = (f"memory limit exceeded: {rss // 2**20} MiB resident, limit "
                  f"{self.memory_limit // 2**20} MiB")
        logger.warning("worker %s: %s; restarting it", self.address, reason)
        self._kill_reason = reason
        # Kill first: a worker still alive after the scheduler dropped it would reconnect.
        # The scheduler waits for this report before it says why the worker was lost.
        proc.kill()
        asyncio.get_running_loop().create_task(
            self._report(self.address, reason, self._will_restart()))

    def _will_restart(self) -> bool:
        """Whether the worker, if it died now, would be started again (not after
        ``MAX_QUICK_DEATHS`` deaths in a row right after starting)."""
        quick = time.monotonic() - self._started_at < QUICK
        return self.restart and not self._closing and (
            not quick or self._quick_deaths + 1 < MAX_QUICK_DEATHS)

    async def _report(self, address: str | None, reason: str, restarting: bool) -> None:
        """Tell the scheduler why the worker at ``address`` died and whether a new one is
        coming."""
        try:
            comm = await connect(self.scheduler_address, self.config, timeout=2)
            await comm.send({"op": "worker-died", "address": address, "reason": reason,
                             "nanny": self.id, "restarting": restarting})
            await asyncio.wait_for(comm.recv(), 2)
            await comm.close()
        except Exception as exc:  # noqa: BLE001 - the scheduler may be gone too
            logger.info("could not tell the scheduler why %s died: %s", address, exc)

    async def _died(self, reason: str) -> None:
        logger.warning("worker %s %s", self.address, reason)
        restarting = self._will_restart()
        quick = time.monotonic() - self._started_at < QUICK
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        dead = self.address
        if not restarting:
            if self.restart:
                reason += (f"; {self._quick_deaths} deaths in a row within {QUICK:g} s of "
                           "starting")
                logger.error("worker died %d times right after starting; not restarting it",
                             self._quick_deaths)
            self._closing = True
            await self._report(dead, reason, False)
            return
        # the replacement starts while the scheduler hears of the death (a memory kill was
        # reported before the kill)
        report = None if self._kill_reason is not None else \
            asyncio.get_running_loop().create_task(self._report(dead, reason, True))
        self.restarts += 1
        try:
            await self.start()
        except DistmlError as exc:
            logger.error("could not restart the worker: %s", exc)
            self._closing = True
            if report is not None:  # heard first, so that "given up" is the last word
                await report
                report = None
            await self._report(dead, f"{reason}; then it could not be restarted: {exc}", False)
        finally:
            if report is not None:
                await report

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (terminate, then kill) and stop supervising."""
        self._closing = True
        self._closed.set()
        if self._spare_task is not None:  # ends at once, or once its launch is done
            await asyncio.gather(self._spare_task, return_exceptions=True)
        spare, self._spare = self._spare, None
        try:
            if self.process is not None:
                await _stop(self.process, timeout)
            if spare is not None:
                await _stop(spare[0], timeout)
            if self._watcher is not None:
                await asyncio.gather(self._watcher, return_exceptions=True)
        finally:
            self._remove_spill_directory()
            if spare is not None:
                shutil.rmtree(spare[1], ignore_errors=True)

    def _remove_spill_directory(self) -> None:
        if self._spill_directory is not None:
            shutil.rmtree(self._spill_directory, ignore_errors=True)
            self._spill_directory = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker process (for tests and chaos experiments)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)


async def _stop(process: asyncio.subprocess.Process, timeout: float) -> None:
    """Terminate ``process``, then kill it if it is still there after ``timeout`` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
