#!/usr/bin/env python
"""Chaos: kill a random worker at a random moment of a computation; is the result still right,
and how much later does it arrive?

Two scenarios, each on its own 2-worker ``LocalCluster`` (one thread and a 300 MiB memory limit
per worker, each worker supervised by a nanny that restarts it):

* ``reductions``: a raw Dask-format graph of a few hundred tasks (fresh keys per run).  200 seeded blocks of
  2500x50 float64 (1 MB each) are made on the workers; each block gives its column sums and
  the column sums of its product with the next block (so blocks travel between workers); both
  are added up in trees of fan-in 4 and turned into means.
* ``map``: ``client.map`` of 400 tasks of ~5 ms of busy work each, returning a small seeded
  array, then ``client.gather``.

Each scenario first runs once to warm up, then 3 times undisturbed (their results must agree
with each other and with numpy in this script).  Then, in each of ``--trials`` trials, a timer
thread sleeps a random fraction (5% to 95%, drawn from ``random.Random(--seed)``) of the
undisturbed run timed right before the trial (see below) and SIGKILLs a random worker (``cluster.supervisors[j].kill()``).  A
trial succeeds if its result equals the undisturbed one exactly.  A trial that raises or takes
longer than ``--timeout`` seconds fails, its error is recorded, and the next trial runs.  The
killing thread also times how long the replacement worker takes to join the scheduler.
Between trials the script waits for the replacement to be older than the nanny's "quick
death" window (a worker that dies right after starting three times in a row is not restarted
again; that guard is not what is measured here).

Right before each trial the workload runs twice more undisturbed: once unmeasured (it warms up
the previous trial's replacement, so that every trial starts from a steady cluster, as the
first undisturbed runs do) and once measured.  A trial's slowdown is its time over the median
of all undisturbed runs (the 3 first and one per trial), so that the reference covers the same
stretch of time as the trials on a machine whose load comes and goes; ``paired slowdown`` is
its time over the undisturbed run just before it.  The 1-minute load average is recorded at
the start and end of each scenario and before each trial.

The workers spill into a private folder (``Config.local_directory``): spill folders left behind
(e.g. by killed workers) are counted once the cluster is closed, then removed.

Usage::

    .venv/bin/python experiments/chaos.py            # 20 trials per scenario (~6 minutes)
    .venv/bin/python experiments/chaos.py --quick    # 4 trials, small sizes (smoke test)

Results: a markdown table on stdout and ``experiments/results/chaos.{json,md}``
(``chaos_quick.*`` with ``--quick``).  Targets: every trial correct, median slowdown <= 1.3x.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distml import Client, Config, LocalCluster
from distml.nanny import QUICK

RESULTS = Path(__file__).parent / "results"
N_WORKERS = 2
MEMORY_LIMIT = "300MiB"
UNDISTURBED_RUNS = 3


def sizes(quick: bool) -> dict[str, int | float]:
    if quick:
        return {"blocks": 40, "rows": 2500, "cols": 50, "fan_in": 4,
                "map_tasks": 100, "task_seconds": 0.005, "result_length": 100}
    return {"blocks": 200, "rows": 2500, "cols": 50, "fan_in": 4,
            "map_tasks": 400, "task_seconds": 0.005, "result_length": 100}


# ----------------------------------------------------------------------------- tasks
def make_block(seed: int, i: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(seed + i).random((rows, cols))


def column_sums(block: np.ndarray) -> np.ndarray:
    return block.sum(axis=0)


def lagged_column_sums(block: np.ndarray, following: np.ndarray) -> np.ndarray:
    return (block * following).sum(axis=0)


def add_all(parts: list[np.ndarray]) -> np.ndarray:
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


def means(sums: np.ndarray, lagged: np.ndarray, count: int) -> np.ndarray:
    return np.concatenate([sums / count, lagged / count])


def busy_work(i: int, seconds: float, length: int) -> np.ndarray:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return np.random.default_rng(i).random(length)


# ----------------------------------------------------------------------------- workloads
def tree(dsk: dict, name: str, leaves: list[Any], fan_in: int) -> Any:
    """Add ``leaves`` up in a tree of ``add_all`` tasks; returns the root's key."""
    level = 0
    while len(leaves) > 1:
        groups = [leaves[i:i + fan_in] for i in range(0, len(leaves), fan_in)]
        leaves = []
        for g, group in enumerate(groups):
            key = (name, level, g)
            dsk[key] = (add_all, list(group))
            leaves.append(key)
        level += 1
    return leaves[0]


def reduction_graph(s: dict, seed: int, run: int) -> tuple[dict, Any]:
    """The reduction as a raw graph whose keys are unique to ``run`` (so nothing is reused
    from an earlier run, e.g. one that timed out and still holds its keys)."""
    n = s["blocks"]
    block, sums, lagged = f"block-{run}", f"sums-{run}", f"lagged-{run}"
    dsk: dict[Any, Any] = {}
    for i in range(n):
        dsk[(block, i)] = (make_block, seed, i, s["rows"], s["cols"])
        dsk[(sums, i)] = (column_sums, (block, i))
        dsk[(lagged, i)] = (lagged_column_sums, (block, i), (block, (i + 1) % n))
    total_sums = tree(dsk, f"add-{sums}", [(sums, i) for i in range(n)], s["fan_in"])
    total_lagged = tree(dsk, f"add-{lagged}", [(lagged, i) for i in range(n)], s["fan_in"])
    dsk[f"means-{run}"] = (means, total_sums, total_lagged, n * s["rows"])
    return dsk, f"means-{run}"


def reduction_reference(s: dict, seed: int) -> np.ndarray:
    """The same means by numpy in this process, one or two blocks in memory at a time."""
    n = s["blocks"]
    first = make_block(seed, 0, s["rows"], s["cols"])
    sums, lagged = np.zeros(s["cols"]), np.zeros(s["cols"])
    block = first
    for i in range(n):
        following = make_block(seed, i + 1, s["rows"], s["cols"]) if i + 1 < n else first
        sums += block.sum(axis=0)
        lagged += (block * following).sum(axis=0)
        block = following
    return means(sums, lagged, n * s["rows"])


@dataclass
class Workload:
    name: str
    run: Callable[[Client, float], Any]
    reference: Callable[[], Any]
    equal: Callable[[Any, Any], bool]
    close: Callable[[Any, Any], bool]


def workloads(s: dict, seed: int) -> list[Workload]:
    runs = itertools.count()

    def run_reductions(client: Client, timeout: float) -> np.ndarray:
        dsk, key = reduction_graph(s, seed, next(runs))
        return client.get(dsk, key, timeout=timeout)

    def run_map(client: Client, timeout: float) -> list[np.ndarray]:
        futures = client.map(busy_work, range(s["map_tasks"]), seconds=s["task_seconds"],
                             length=s["result_length"], pure=False)
        return client.gather(futures, timeout=timeout)

    def map_reference() -> list[np.ndarray]:
        return [np.random.default_rng(i).random(s["result_length"])
                for i in range(s["map_tasks"])]

    def all_pairs(test: Callable[[np.ndarray, np.ndarray], bool]) -> Callable[[Any, Any], bool]:
        return lambda a, b: len(a) == len(b) and all(test(x, y) for x, y in zip(a, b))

    return [
        Workload("reductions", run_reductions, lambda: reduction_reference(s, seed),
                 np.array_equal, np.allclose),
        Workload("map", run_map, map_reference, all_pairs(np.array_equal),
                 all_pairs(np.allclose)),
    ]


# ----------------------------------------------------------------------------- trials
class Killer(threading.Thread):
    """After ``delay`` seconds, SIGKILL worker ``j``; then time until its replacement joins."""

    def __init__(self, cluster: LocalCluster, j: int, delay: float, timeout: float = 60.0):
        super().__init__(daemon=True)
        self.cluster, self.supervisor = cluster, cluster.supervisors[j]
        self.delay, self.timeout = delay, timeout
        self.killed_at: float | None = None
        self.rejoin_seconds: float | None = None

    def run(self) -> None:
        time.sleep(self.delay)
        restarts_before, address_before = self.supervisor.restarts, self.supervisor.address
        self.supervisor.kill()
        self.killed_at = time.perf_counter()
        while time.perf_counter() - self.killed_at < self.timeout:
            address = self.supervisor.address
            if (self.supervisor.restarts > restarts_before and address != address_before
                    and address in self.cluster.workers):
                self.rejoin_seconds = time.perf_counter() - self.killed_at
                return
            time.sleep(0.01)


def run_trial(cluster: LocalCluster, client: Client, workload: Workload, expected: Any,
              reference: float, rng: random.Random, timeout: float) -> dict[str, Any]:
    """One kill at a random fraction of ``reference`` seconds (an undisturbed run's time)
    into a run (the slowdown is computed by the caller, against every undisturbed run)."""
    j = rng.randrange(N_WORKERS)
    killer = Killer(cluster, j, rng.uniform(0.05, 0.95) * reference)
    error, trace = None, None
    start = time.perf_counter()
    killer.start()
    try:
        result = workload.run(client, timeout)
        if not workload.equal(result, expected):
            error = "result differs from the undisturbed one"
    except Exception as exc:  # noqa: BLE001 - recorded; the next trial runs
        error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
    seconds = time.perf_counter() - start
    killer.join()
    if killer.rejoin_seconds is None:
        error = f"{error}; " if error else ""
        error += f"worker {j} was not replaced within {killer.timeout} s"
    else:
        cluster.wait_for_workers(N_WORKERS)
        # a worker that dies within QUICK s of starting 3 times in a row is not restarted;
        # let the replacement outlive that window so the next kill is an ordinary death
        time.sleep(max(0.0, QUICK + 0.2 - (time.perf_counter() - killer.killed_at)))
    return {"worker": j, "kill_after_seconds": round(killer.delay, 4),
            "kill_during_run": killer.killed_at - start < seconds,
            "rejoin_seconds": killer.rejoin_seconds and round(killer.rejoin_seconds, 3),
            "seconds": round(seconds, 4), "correct": error is None, "error": error,
            "traceback": trace}


def timed_run(client: Client, workload: Workload, expected: Any, timeout: float) -> float:
    """Seconds of one undisturbed run, whose result must equal ``expected``."""
    start = time.perf_counter()
    result = workload.run(client, timeout)
    seconds = time.perf_counter() - start
    if not workload.equal(result, expected):
        raise AssertionError(f"{workload.name}: undisturbed runs disagree")
    return seconds


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def run_scenario(workload: Workload, trials: int, seed: int, timeout: float) -> dict[str, Any]:
    """Warm up, time the undisturbed runs, then run the trials, on one fresh cluster.

    The workers' spill folders go to a private folder (``local_directory``), so that those
    left behind can be counted (and removed) once the cluster is closed.
    """
    expected = workload.reference()
    load_start = load_average()
    temp_root = Path(tempfile.mkdtemp(prefix="chaos-experiment-"))
    config = Config.load(local_directory=str(temp_root))
    with LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, memory_limit=MEMORY_LIMIT,
                      config=config) as cluster, Client(cluster) as client:
        workload.run(client, timeout)  # warm-up: imports on the workers
        undisturbed, results = [], []
        for _ in range(UNDISTURBED_RUNS):
            start = time.perf_counter()
            results.append(workload.run(client, timeout))
            undisturbed.append(time.perf_counter() - start)
        if not all(workload.equal(r, results[0]) for r in results):
            raise AssertionError(f"{workload.name}: undisturbed runs disagree")
        if not workload.close(results[0], expected):
            raise AssertionError(f"{workload.name}: undisturbed result differs from numpy's")
        rng = random.Random(seed)
        records = []
        for t in range(trials):
            load = load_average()
            workload.run(client, timeout)  # warms up the previous trial's replacement
            before = timed_run(client, workload, results[0], timeout)
            undisturbed.append(before)
            # the kill moment is drawn within the run just timed: the first runs' median was
            # up to 30% longer than later runs, which let some kills land after the work ended
            record = run_trial(cluster, client, workload, results[0], before, rng, timeout)
            record.update(load_average=load, undisturbed_before_seconds=round(before, 4),
                          paired_slowdown=round(record["seconds"] / before, 3))
            records.append(record)
            print(f"  {workload.name} trial {t + 1}/{trials} (load {load}): worker "
                  f"{record['worker']} killed after {record['kill_after_seconds']:.3f} s, "
                  f"{record['seconds']:.3f} s (undisturbed just before: {before:.3f} s), "
                  f"{'ok' if record['correct'] else record['error']}", flush=True)
        restarts = sum(s.restarts for s in cluster.supervisors)
    spill_dirs_left = len(list(temp_root.iterdir()))
    shutil.rmtree(temp_root, ignore_errors=True)
    median = statistics.median(undisturbed)
    for record in records:
        record["slowdown"] = round(record["seconds"] / median, 3)
    # a kill that came after the work ended disturbed nothing: such trials are counted
    # (kills during run) but left out of the slowdowns
    landed = [r for r in records if r["correct"] and r["kill_during_run"]]
    slowdowns = [r["slowdown"] for r in landed]
    paired = [r["paired_slowdown"] for r in landed]
    rejoins = [r["rejoin_seconds"] for r in records if r["rejoin_seconds"] is not None]
    return {"undisturbed_seconds": [round(u, 4) for u in undisturbed],
            "median_undisturbed_seconds": round(median, 4), "trials": records,
            "correct": sum(r["correct"] for r in records), "n_trials": trials,
            "kills_during_run": sum(r["kill_during_run"] for r in records),
            "median_slowdown": round(statistics.median(slowdowns), 3) if slowdowns else None,
            "median_paired_slowdown": round(statistics.median(paired), 3) if paired else None,
            "load_average_start": load_start, "load_average_end": load_average(),
            "max_slowdown": round(max(slowdowns), 3) if slowdowns else None,
            "median_rejoin_seconds": round(statistics.median(rejoins), 3) if rejoins else None,
            "restarts": restarts, "spill_dirs_left_after_close": spill_dirs_left}


# ----------------------------------------------------------------------------- report
def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| scenario | correct | median slowdown | max slowdown | median paired slowdown | "
             "restarts | undisturbed median (s) | kills during run | median rejoin (s) | "
             "spill folders left | load average (start, end) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        median = "-" if r["median_slowdown"] is None else f"{r['median_slowdown']:.2f}x"
        worst = "-" if r["max_slowdown"] is None else f"{r['max_slowdown']:.2f}x"
        rejoin = "-" if r["median_rejoin_seconds"] is None else f"{r['median_rejoin_seconds']:.2f}"
        paired = "-" if r["median_paired_slowdown"] is None else \
            f"{r['median_paired_slowdown']:.2f}x"
        lines.append(f"| {name} | {r['correct']}/{r['n_trials']} | {median} | {worst} | "
                     f"{paired} | {r['restarts']} | {r['median_undisturbed_seconds']:.3f} | "
                     f"{r['kills_during_run']}/{r['n_trials']} | {rejoin} | "
                     f"{r['spill_dirs_left_after_close']} | "
                     f"{r['load_average_start']}, {r['load_average_end']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 trials, small sizes")
    parser.add_argument("--trials", type=int, default=None, help="trials per scenario (20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per trial")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 20)
    s = sizes(args.quick)
    results = {}
    for workload in workloads(s, args.seed):
        print(f"{workload.name}: {trials} trials", flush=True)
        results[workload.name] = run_scenario(workload, trials, args.seed, args.timeout)
    table = markdown(results)
    print(table)
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"chaos{suffix}.json").write_text(json.dumps(
        {"quick": args.quick, "trials": trials, "seed": args.seed, "sizes": s,
         "n_workers": N_WORKERS, "memory_limit": MEMORY_LIMIT, "scenarios": results},
        indent=2) + "\n")
    (RESULTS / f"chaos{suffix}.md").write_text(
        f"# Chaos: one worker SIGKILLed at a random moment, {trials} trials per scenario\n\n"
        f"{N_WORKERS} workers, {MEMORY_LIMIT} each; slowdown = trial time / median of the "
        f"{UNDISTURBED_RUNS} first undisturbed runs and one right before each trial; paired "
        f"slowdown = trial time / the undisturbed run right before it. Slowdowns count the "
        f"correct trials whose kill came before the work ended.\n\n{table}\n")


if __name__ == "__main__":
    main()
