#!/usr/bin/env python
"""Runtime micro-benchmarks: distml against Dask ``distributed`` on the same local cluster shape.

Measured, for each system, on a local cluster of 2 worker processes with 1 thread each:

* ``map``: 10,000 no-op tasks with ``client.map`` + ``client.gather`` (tasks/s);
* ``tree``: a binary tree sum over 10,000 leaf tasks, submitted as one raw graph with
  ``client.get`` (tasks/s, counting leaves and internal nodes: 19,999 tasks);
* ``chain (graph)``: 1,000 dependent ``inc`` tasks as one raw graph with ``client.get``
  (ms per step);
* ``chain (client waits)``: ``f = client.submit(inc, f); f.result()`` 1,000 times (ms per step);
* ``scatter+gather``: a 100 MB numpy array scattered then gathered back
  (GB/s, counting 2 * nbytes moved);
* ``start``: local cluster start until all workers are ready (s).

Every measurement runs once as a warm-up (with smaller sizes, except for ``start`` and
``scatter+gather``) and then up to ``--repeat`` times; the best run is reported. So that the
whole benchmark stays within a few minutes on 2 cores, a measurement stops repeating once
another run would take it past ``--budget`` seconds (at least one timed run is always made;
the JSON lists every run). Repeated runs use
fresh keys (``pure=False``, per-run key prefixes, ``hash=False`` scatters) so nothing is
served from a cache.

Dask runs twice: with its defaults (root-task queuing on) and with queuing turned off
(``distributed.scheduler.worker-saturation: inf``, set before the cluster is created).

Each system runs in its own child process (a new session), so its cluster is fully shut down,
and any stray process of that session killed, before the next system starts: the two systems
never share the machine's cores. A child that hangs is stopped by a per-measurement watchdog
that prints every thread's stack to stderr; the measurements it finished are still reported.

Usage::

    .venv/bin/python experiments/bench_runtime.py              # full run (a few minutes)
    .venv/bin/python experiments/bench_runtime.py --quick      # smoke test
    .venv/bin/python experiments/bench_runtime.py --only dask --repeat 5

Results: a markdown table on stdout, ``experiments/results/bench_runtime.json`` and
``experiments/results/bench_runtime.md`` (``bench_runtime_quick.*`` with ``--quick``).

Task functions are defined at module level in this script. The script's directory is not on
the workers' path, so they must travel by value: when the script is run directly they live in
``__main__``, which cloudpickle (used by distml and Dask for ``__main__`` functions) pickles by
value; if this file is imported as a module instead, :func:`_pickle_tasks_by_value` registers
it with cloudpickle for by-value pickling.
"""

from __future__ import annotations

import abc
import argparse
import datetime as _dt
import faulthandler
import gc
import importlib.util
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

# Quiet the runtimes, in this process and in every worker process (they inherit the
# environment). Set before distml / distributed are imported.
os.environ["DISTML_LOG_LEVEL"] = "WARNING"
os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

SYSTEMS = ("distml", "dask", "dask-noqueue")
COLUMN_TITLES = {"distml": "distml", "dask": "dask", "dask-noqueue": "dask (no queuing)"}

FULL_SIZES = {"map": 10_000, "tree": 10_000, "chain_graph": 1_000, "chain_client": 1_000,
              "scatter_bytes": 100_000_000}
QUICK_SIZES = {"map": 1_000, "tree": 1_000, "chain_graph": 100, "chain_client": 100,
               "scatter_bytes": 10_000_000}

# name -> (label, unit, higher_is_better)
MEASUREMENTS = {
    "map": ("map + gather, {map:,} no-op tasks", "tasks/s", True),
    "tree": ("tree sum, {tree:,} leaves ({tree_tasks:,} tasks), one graph", "tasks/s", True),
    "chain_graph": ("chain of {chain_graph:,} tasks, one graph", "ms/step", False),
    "chain_client": ("chain of {chain_client:,} tasks, client waits each step", "ms/step", False),
    "scatter_gather": ("scatter + gather, {scatter_mb:g} MB numpy array", "GB/s", True),
    "start": ("local cluster start to ready", "s", False),
}
ORDER = ["map", "tree", "chain_graph", "chain_client", "scatter_gather", "start"]


# ----------------------------------------------------------------------------------------------
# Task functions (module level; see the module docstring about pickling)
# ----------------------------------------------------------------------------------------------

def noop(x):
    """The no-op task."""
    return None


def leaf(x):
    """A tree leaf: its own value."""
    return x


def add(a, b):
    return a + b


def inc(x):
    return x + 1


def _pickle_tasks_by_value() -> None:
    """Make cloudpickle send this module's functions by value when it is not ``__main__``."""
    if __name__ == "__main__":
        return
    try:
        import cloudpickle
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    except Exception:  # noqa: BLE001 - older cloudpickle: functions go by reference
        pass


# ----------------------------------------------------------------------------------------------
# Graph builders (outside the timed region)
# ----------------------------------------------------------------------------------------------

def tree_graph(n_leaves: int, prefix: str) -> tuple[dict, str, int]:
    """A binary tree summing ``leaf(i)`` for i < n_leaves. Returns (graph, root key, n_tasks)."""
    dsk: dict[str, tuple] = {}
    level = []
    for i in range(n_leaves):
        key = f"{prefix}-leaf-{i}"
        dsk[key] = (leaf, i)
        level.append(key)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level) - 1, 2):
            key = f"{prefix}-sum-{depth}-{j // 2}"
            dsk[key] = (add, level[j], level[j + 1])
            nxt.append(key)
        if len(level) % 2:
            nxt.append(level[-1])  # odd one out moves up a level unchanged
        level = nxt
    return dsk, level[0], len(dsk)


def chain_graph(n: int, prefix: str) -> tuple[dict, str]:
    dsk: dict[str, tuple] = {f"{prefix}-0": (inc, 0)}
    for i in range(1, n):
        dsk[f"{prefix}-{i}"] = (inc, f"{prefix}-{i - 1}")
    return dsk, f"{prefix}-{n - 1}"


def _prefix(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


# ----------------------------------------------------------------------------------------------
# Systems under test (used in the child process only)
# ----------------------------------------------------------------------------------------------

class System(abc.ABC):
    """One runtime: start/stop a 2x1 local cluster and run the benchmark operations on it."""

    name = "?"
    client: Any = None

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Package versions of this system, for the report."""

    @abc.abstractmethod
    def start(self) -> float:
        """Start cluster + client; return seconds from cluster start to all workers ready."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop client and cluster."""

    def scheduler_task_count(self) -> int | None:
        return None

    def settle(self, timeout: float = 5.0) -> None:
        """Let released keys drain from the scheduler between runs (not timed)."""
        gc.collect()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                count = self.scheduler_task_count()
            except Exception:  # noqa: BLE001 - internals changed; fall back to a pause
                count = None
            if count is None:
                time.sleep(0.2)
                return
            if count == 0:
                return
            time.sleep(0.02)

    # The operations. Each returns the elapsed seconds of the timed region.
    def map_gather(self, n: int) -> float:
        client = self.client
        t0 = time.perf_counter()
        futures = client.map(noop, range(n), pure=False)
        values = client.gather(futures)
        elapsed = time.perf_counter() - t0
        assert len(values) == n, f"gathered {len(values)} values for {n} tasks"
        del futures, values
        return elapsed

    def tree(self, n_leaves: int) -> tuple[float, int]:
        dsk, root, n_tasks = tree_graph(n_leaves, _prefix("tree"))
        t0 = time.perf_counter()
        total = self.client.get(dsk, root)
        elapsed = time.perf_counter() - t0
        assert total == n_leaves * (n_leaves - 1) // 2, f"tree sum {total!r} is wrong"
        return elapsed, n_tasks

    def chain_graph(self, n: int) -> float:
        dsk, last = chain_graph(n, _prefix("chain"))
        t0 = time.perf_counter()
        value = self.client.get(dsk, last)
        elapsed = time.perf_counter() - t0
        assert value == n, f"chain gave {value!r}, expected {n}"
        return elapsed

    def chain_client(self, n: int) -> float:
        client = self.client
        f = client.submit(inc, 0, pure=False)
        f.result()
        t0 = time.perf_counter()
        for _ in range(n):
            f = client.submit(inc, f, pure=False)
            f.result()
        elapsed = time.perf_counter() - t0
        value = f.result()
        assert value == n + 1, f"chain gave {value!r}, expected {n + 1}"
        del f
        return elapsed

    def scatter(self, data: Any) -> Any:
        return self.client.scatter(data, hash=False)

    def scatter_gather(self, array: Any) -> float:
        t0 = time.perf_counter()
        future = self.scatter(array)
        back = self.client.gather(future)
        elapsed = time.perf_counter() - t0
        assert back.nbytes == array.nbytes and back.dtype == array.dtype, "gathered array differs"
        assert back[0] == array[0] and back[-1] == array[-1] and back[len(back) // 2] == \
            array[len(array) // 2], "gathered array differs"
        del future, back
        return elapsed


class DistmlSystem(System):
    name = "distml"

    def __init__(self) -> None:
        import distml  # noqa: F401 - fail early if the package is missing
        self.distml = distml
        logging.getLogger("distml").setLevel(logging.WARNING)

    def versions(self) -> dict[str, str]:
        return {"distml": getattr(self.distml, "__version__", "?")}

    def start(self) -> float:
        from distml import Client
        self.client = Client(n_workers=2, threads_per_worker=1)
        return float(self.client.cluster.start_seconds)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def scheduler_task_count(self) -> int | None:
        return len(self.client.cluster.scheduler.state.tasks)

    def scatter(self, data: Any) -> Any:
        try:
            return self.client.scatter(data, hash=False)
        except TypeError:  # no ``hash=`` option
            return self.client.scatter(data)


class DaskSystem(System):
    def __init__(self, queuing: bool) -> None:
        import dask
        import distributed
        self.dask, self.distributed = dask, distributed
        self.name = "dask" if queuing else "dask-noqueue"
        if not queuing:
            # Must be set before the scheduler is created.
            dask.config.set({"distributed.scheduler.worker-saturation": "inf"})
        logging.getLogger("distributed").setLevel(logging.WARNING)
        self.cluster = None

    def versions(self) -> dict[str, str]:
        return {"dask": self.dask.__version__, "distributed": self.distributed.__version__,
                "worker-saturation": str(self.dask.config.get(
                    "distributed.scheduler.worker-saturation"))}

    def start(self) -> float:
        from distributed import Client, LocalCluster
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.WARNING)
        self.cluster = cluster
        # LocalCluster returns once its workers have started; make sure they have registered.
        deadline = time.monotonic() + 60
        while len(cluster.scheduler.workers) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("dask workers did not register within 60 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        self.client = Client(cluster)
        return elapsed

    def close(self) -> None:
        client, self.client = self.client, None
        cluster, self.cluster = self.cluster, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def scheduler_task_count(self) -> int | None:
        return len(self.cluster.scheduler.tasks)


# ----------------------------------------------------------------------------------------------
# Child process: run every measurement for one system
# ----------------------------------------------------------------------------------------------

class Recorder:
    """Results of one system, rewritten to a JSON file after every step so that a parent can
    read what was finished even if this process is killed."""

    def __init__(self, path: Path, system: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"system": system, "versions": {}, "measurements": {},
                                     "errors": {}, "current": None, "completed": False}
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def step(self, name: str) -> None:
        """Note what runs now, so a parent can tell which step a watchdog exit interrupted."""
        self.data["current"] = name
        self.flush()

    def result(self, name: str, **fields: Any) -> None:
        self.data["measurements"][name] = fields
        self.flush()

    def error(self, name: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        self.data["errors"][name] = text
        self.flush()
        print(f"[{self.data['system']}] {name} failed:\n{text}", file=sys.stderr, flush=True)


def _log(system: str, message: str) -> None:
    print(f"[{system}] {message}", file=sys.stderr, flush=True)


def run_child(system_name: str, sizes: dict[str, int], repeat: int, timeout: float,
              budget: float, out: Path) -> int:
    logging.basicConfig(level=logging.WARNING)
    rec = Recorder(out, system_name)

    def watchdog(seconds: float) -> None:
        # On expiry: dump every thread's stack to stderr and exit the process.
        faulthandler.dump_traceback_later(seconds, exit=True)

    try:
        sut: System = DistmlSystem() if system_name == "distml" else \
            DaskSystem(queuing=(system_name == "dask"))
        rec.data["versions"] = sut.versions()
        rec.flush()
    except BaseException as exc:  # noqa: BLE001 - report an unusable system and stop
        rec.error(ORDER[0], exc)
        for name in ORDER[1:]:
            rec.data["errors"][name] = "not run: the system could not be loaded (first error)"
        rec.flush()
        return 1

    # ---- start: one warm-up start, then `repeat` more; the last cluster stays up for the rest.
    starts: list[float] = []
    rec.step("start")
    started = False
    for i in range(repeat + 1):
        watchdog(timeout)
        try:
            seconds = sut.start()
            started = True
            if i > 0:
                starts.append(seconds)
            _log(system_name, f"start {i}: {seconds:.3f} s" + (" (warm-up)" if i == 0 else ""))
            if i < repeat:
                sut.close()
                started = False
        except BaseException as exc:  # noqa: BLE001
            rec.error("start", exc)
            try:
                sut.close()
            except BaseException:  # noqa: BLE001
                pass
            started = False
            break
        finally:
            faulthandler.cancel_dump_traceback_later()
    if starts:
        rec.result("start", best=min(starts), runs=starts)
    if not started:
        try:
            watchdog(timeout)
            sut.start()
            started = True
        except BaseException as exc:  # noqa: BLE001
            for name in ORDER[:-1]:
                rec.error(name, exc)
            return 1
        finally:
            faulthandler.cancel_dump_traceback_later()

    import numpy as np
    array = np.random.default_rng(0).random(sizes["scatter_bytes"] // 8)
    small = lambda n: max(10, n // 10)  # noqa: E731 - warm-up size

    # name -> (run(size) -> (elapsed seconds, work units), full size, warm-up size, to_metric)
    def timed(fn: Callable[[int], float]) -> Callable[[int], tuple[float, int]]:
        return lambda n: (fn(n), n)

    plans = {
        "map": (timed(sut.map_gather), sizes["map"], small(sizes["map"]),
                lambda sec, n: n / sec),
        "tree": (sut.tree, sizes["tree"], small(sizes["tree"]), lambda sec, n: n / sec),
        "chain_graph": (timed(sut.chain_graph), sizes["chain_graph"], small(sizes["chain_graph"]),
                        lambda sec, n: 1000 * sec / n),
        "chain_client": (timed(sut.chain_client), sizes["chain_client"],
                         small(sizes["chain_client"]), lambda sec, n: 1000 * sec / n),
        "scatter_gather": (lambda _n: (sut.scatter_gather(array), 2 * array.nbytes), 0, 0,
                           lambda sec, nbytes: nbytes / sec / 1e9),
    }
    for name in ORDER[:-1]:
        run, size, warm_size, metric = plans[name]
        _, _, higher_is_better = MEASUREMENTS[name]
        values, seconds, units = [], [], 0
        rec.step(name)
        watchdog(timeout)
        began = time.perf_counter()
        try:
            run(warm_size)
            sut.settle()
            for _ in range(repeat):
                sec, units = run(size)
                seconds.append(sec)
                values.append(metric(sec, units))
                # Kept if a later run hangs and the watchdog ends this process.
                rec.result(name, best=max(values) if higher_is_better else min(values),
                           runs=values, seconds=seconds, units=units, partial=True)
                sut.settle()
                # Slow systems: stop repeating once another run would exceed the budget.
                if time.perf_counter() - began + sec > budget:
                    break
            best = max(values) if higher_is_better else min(values)
            rec.result(name, best=best, runs=values, seconds=seconds, units=units)
            _log(system_name, f"{name}: best {best:.4g} ({MEASUREMENTS[name][1]}); "
                              f"runs {[round(v, 4) for v in values]}")
        except BaseException as exc:  # noqa: BLE001 - record it and go on to the next one
            if values:
                rec.data["measurements"][name] = {
                    "best": max(values) if higher_is_better else min(values),
                    "runs": values, "seconds": seconds, "units": units, "partial": True}
            rec.error(name, exc)
            try:
                sut.settle()
            except BaseException:  # noqa: BLE001
                pass
        finally:
            faulthandler.cancel_dump_traceback_later()

    rec.step("close")
    watchdog(timeout)
    try:
        sut.close()
    except BaseException as exc:  # noqa: BLE001
        rec.error("close", exc)
    finally:
        faulthandler.cancel_dump_traceback_later()
    rec.data["completed"] = True
    rec.flush()
    return 0


# ----------------------------------------------------------------------------------------------
# Parent process: one child per system, then the table
# ----------------------------------------------------------------------------------------------

def _kill_session(pgid: int) -> None:
    """Kill whatever is left of a child's session (e.g. worker processes after a hang)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.5)


def run_system(system: str, sizes: dict[str, int], repeat: int, timeout: float,
               budget: float) -> dict[str, Any]:
    fd, tmp_name = tempfile.mkstemp(prefix=f"bench_runtime_{system}_", suffix=".json")
    os.close(fd)
    out = Path(tmp_name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", system,
           "--_sizes", json.dumps(sizes), "--repeat", str(repeat), "--timeout", str(timeout),
           "--budget", str(budget), "--_out", str(out)]
    # Watchdogs cover 1 + repeat starts (one each), 5 measurements and the close.
    overall = timeout * (repeat + 8) + 30
    print(f"== {COLUMN_TITLES[system]} ==", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        returncode = proc.wait(overall)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        _kill_session(proc.pid)
        if proc.poll() is None:
            proc.wait()
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {"system": system, "versions": {}, "measurements": {}, "errors": {},
                "completed": False}
    finally:
        out.unlink(missing_ok=True)
    data["returncode"] = returncode if returncode is not None else proc.returncode
    data["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if not data.get("completed"):
        reason = ("killed after the overall time budget" if returncode is None else
                  f"child exited with code {returncode} (watchdog timeout or crash; "
                  "see the stack dump on stderr)")
        current = data.get("current")
        if current and current not in data["errors"]:
            data["errors"][current] = f"timeout/crash during this step: {reason}"
        for name in ORDER:
            if name not in data["measurements"] and name not in data["errors"]:
                data["errors"][name] = f"not run: an earlier step did not finish ({reason})"
        data["status"] = reason
    return data


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit == "ms/step":
        return f"{value:.3f}"
    if unit == "GB/s":
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(results: dict[str, dict], system: str, name: str, unit: str) -> str:
    data = results.get(system)
    if data is None:
        return "n/a"
    m = data["measurements"].get(name)
    err = data["errors"].get(name)
    if m is None:
        if err is None:
            return "n/a"
        if err.startswith("not run"):
            return "not run"
        return "timeout" if err.startswith("timeout/crash") else "error"
    text = _fmt(m["best"], unit)
    return text + " (partial)" if m.get("partial") or err else text


def _best(results: dict[str, dict], system: str, name: str) -> float | None:
    data = results.get(system)
    if data is None:
        return None
    m = data["measurements"].get(name)
    return None if m is None else m["best"]


def _ratio(d: float | None, other: float | None, higher_is_better: bool) -> float | None:
    if not d or not other:
        return None
    return d / other if higher_is_better else other / d


TARGETS = {  # name -> (text, check(distml, dask_noqueue) -> bool | None)
    "map": (">= 10,000 and >= 3x dask (no queuing)", None),
    "tree": (">= 10,000 and >= 3x dask (no queuing)", None),
    "chain_graph": ("<= 0.5", lambda v: v <= 0.5),
    "chain_client": ("<= 1", lambda v: v <= 1.0),
    "scatter_gather": (">= 1", lambda v: v >= 1.0),
    "start": ("<= 0.5", lambda v: v <= 0.5),
}


def evaluate(results: dict[str, dict], sizes: dict[str, int]) -> list[dict[str, Any]]:
    fmt_args = dict(sizes, tree_tasks=2 * sizes["tree"] - 1,
                    scatter_mb=sizes["scatter_bytes"] / 1e6)
    rows = []
    for name in ORDER:
        label, unit, higher = MEASUREMENTS[name]
        d, q, nq = (_best(results, s, name) for s in SYSTEMS)
        target_text, check = TARGETS[name]
        met: bool | None
        if d is None:
            met = None
        elif check is not None:
            met = bool(check(d))
        else:
            met = d >= 10_000
            if nq is not None:
                met = met and d >= 3 * nq
        rows.append({
            "name": name, "measurement": label.format(**fmt_args), "unit": unit,
            "distml": d, "dask": q, "dask_noqueue": nq,
            "ratio_vs_dask": _ratio(d, q, higher),
            "ratio_vs_dask_noqueue": _ratio(d, nq, higher),
            "target": target_text, "target_met": met,
            "cells": {s: _cell(results, s, name, unit) for s in SYSTEMS},
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ["measurement", "unit", "distml", "dask", "dask (no queuing)",
              "ratio distml/dask (>1: distml better)", "target", "target met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        ratio = "n/a" if r["ratio_vs_dask"] is None else f"{r['ratio_vs_dask']:.2f}x"
        met = {None: "n/a", True: "yes", False: "no"}[r["target_met"]]
        lines.append("| " + " | ".join([
            r["measurement"], r["unit"], r["cells"]["distml"], r["cells"]["dask"],
            r["cells"]["dask-noqueue"], ratio, r["target"], met]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", choices=["distml", "dask"], help="run one system only")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per measurement after one warm-up (default 3; 1 with "
                             "--quick)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one measurement (warm-up + repeats) may take before the "
                             "watchdog stops that system (default 90; 30 with --quick)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which a measurement stops repeating (at least one "
                             "timed run is always made; default 10; 5 with --quick); use a "
                             "large value to always make --repeat runs")
    parser.add_argument("--_child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--_sizes", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    timeout = args.timeout if args.timeout is not None else (30.0 if args.quick else 90.0)
    budget = args.budget if args.budget is not None else (5.0 if args.quick else 10.0)

    if args._child:
        return run_child(args._child, json.loads(args._sizes), repeat, timeout, budget,
                         Path(args._out))

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    have_dask = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))
    systems = [s for s in SYSTEMS if args.only is None or s.startswith(args.only)]
    if not have_dask:
        if args.only == "dask":
            print("dask/distributed are not importable", file=sys.stderr)
        systems = [s for s in systems if s == "distml"]

    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    for system in systems:
        results[system] = run_system(system, sizes, repeat, timeout, budget)
    total = time.perf_counter() - t0

    rows = evaluate(results, sizes)
    table = markdown_table(rows)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    config = (f"{stamp}; {platform.node()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; 2 workers x 1 thread; best of up to {repeat} timed "
              f"runs after one warm-up (fewer past {budget:g} s per measurement); "
              f"{total:.0f} s total")
    errors = {s: d["errors"] for s, d in results.items() if d.get("errors")}

    print()
    print(table)
    print()
    print(config)
    if errors:
        print("\nErrors (full tracebacks in the JSON file):")
        for system, errs in errors.items():
            for name, text in errs.items():
                last = text.strip().splitlines()[-1] if text.strip() else text
                print(f"  {COLUMN_TITLES[system]} / {name}: {last}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = "bench_runtime_quick" if args.quick else "bench_runtime"
    payload = {
        "created": stamp, "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "quick": args.quick, "repeat": repeat,
        "budget_seconds": budget, "timeout_seconds": timeout,
        "sizes": sizes, "tree_tasks": 2 * sizes["tree"] - 1, "total_seconds": round(total, 1),
        "config": "2 workers x 1 thread, local processes",
        "systems": {s: results.get(s) for s in SYSTEMS},
        "rows": [{k: v for k, v in r.items() if k != "cells"} for r in rows],
    }
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md = [f"# Runtime benchmark{' (quick)' if args.quick else ''}", "", config, "", table, ""]
    if errors:
        md += ["Errors:", ""]
        for system, errs in errors.items():
            for name, text in errs.items():
                last = text.strip().splitlines()[-1] if text.strip() else text
                md.append(f"- {COLUMN_TITLES[system]} / {name}: `{last}`")
        md.append("")
    (RESULTS_DIR / f"{stem}.md").write_text("\n".join(md))
    print(f"\nwrote {RESULTS_DIR / (stem + '.json')} and {RESULTS_DIR / (stem + '.md')}")
    return 0 if not errors else 1


_pickle_tasks_by_value()

if __name__ == "__main__":
    sys.exit(main())
