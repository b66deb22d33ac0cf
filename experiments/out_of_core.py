#!/usr/bin/env python
"""Out of core: reduce data three times larger than the cluster's combined memory limit.

A 2-worker ``LocalCluster`` (one thread each, ``memory_limit="400MiB"``) creates 2.4 GiB of
seeded float64 blocks on its workers (150 blocks of 16 MiB; block ``i`` is
``np.random.default_rng(seed + i).random(n)``).  The script holds every block's future, so
the workers must keep all the blocks: what does not fit in memory has to go to disk.  Once
all blocks exist, the bytes on disk are read from each worker (``data.spilled_bytes``,
``data.spill_count``).  Then each block is summed and the sums are added in a tree of fan-in
8 (every spilled block is read back once).

Measured: the time to create the blocks and the time to reduce them; the bytes spilled right
after creation; each worker's peak resident memory against its limit (target: at most 1.2x),
both as the worker's own ``distml_worker.peak_rss`` (sampled by its memory monitor) and as
sampled by this script every 50 ms over all the processes of a worker slot (a nanny restarts a
worker past 95% of its limit, which loses its blocks and its own peak); the number of such
restarts.  The result is checked against the same sums done with numpy in this script, one
block at a time, added in the same tree (so it should match exactly).  The workers spill
into a private folder (``Config.local_directory``); after the cluster closes, the spill
folders left in it are counted (and removed).

``--quick`` uses 4 MiB blocks and a 160 MiB limit per worker (960 MiB of data, still 3x the
limit).  One eighth of the full sizes would give a 50 MiB limit, barely more than an idle
worker process takes (~45 MiB).

Usage::

    .venv/bin/python experiments/out_of_core.py            # 2.4 GiB through 800 MiB
    .venv/bin/python experiments/out_of_core.py --quick    # 960 MiB through 320 MiB

Results: markdown tables on stdout and ``experiments/results/out_of_core.{json,md}``
(``out_of_core_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import psutil

from distml import Client, Config, LocalCluster, wait

RESULTS = Path(__file__).parent / "results"
N_WORKERS = 2
DATA_FACTOR = 3
FAN_IN = 8
MIB = 2**20
T = TypeVar("T")


def sizes(quick: bool) -> dict[str, int]:
    limit_mib, block_mib = (160, 4) if quick else (400, 16)
    return {"memory_limit_mib": limit_mib, "block_mib": block_mib,
            "blocks": DATA_FACTOR * N_WORKERS * limit_mib // block_mib,
            "block_length": block_mib * MIB // 8}


# ----------------------------------------------------------------------------- tasks
def make_block(i: int, seed: int, length: int) -> np.ndarray:
    return np.random.default_rng(seed + i).random(length)


def block_sum(block: np.ndarray) -> float:
    return float(block.sum())


def add(*values: float) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def memory_state(distml_worker: Any) -> dict[str, int]:
    return {"spilled_bytes": distml_worker.data.spilled_bytes,
            "spill_count": distml_worker.data.spill_count,
            "peak_rss": distml_worker.peak_rss}


# ----------------------------------------------------------------------------- experiment
def tree_reduce(items: list[T], combine: Callable[[list[T]], T]) -> T:
    """Combine ``items`` in groups of ``FAN_IN``, level by level, down to one."""
    while len(items) > 1:
        items = [combine(items[i:i + FAN_IN]) for i in range(0, len(items), FAN_IN)]
    return items[0]


def reference_sum(s: dict[str, int], seed: int) -> float:
    """The cluster's arithmetic in this process, one block in memory at a time."""
    sums = [block_sum(make_block(i, seed, s["block_length"])) for i in range(s["blocks"])]
    return tree_reduce(sums, lambda group: add(*group))


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


class RssSampler(threading.Thread):
    """Peak resident memory of each worker slot, over all its processes (a worker killed for
    its memory takes its own ``peak_rss`` with it; this keeps it)."""

    def __init__(self, cluster: LocalCluster, interval: float = 0.05):
        super().__init__(daemon=True)
        self.cluster, self.interval = cluster, interval
        self.peaks = [0] * len(cluster.supervisors)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            for i, supervisor in enumerate(self.cluster.supervisors):
                try:
                    rss = psutil.Process(supervisor.process.pid).memory_info().rss
                except (psutil.Error, AttributeError):  # between processes
                    continue
                self.peaks[i] = max(self.peaks[i], rss)


def run_cluster(s: dict[str, int], seed: int, timeout: float) -> dict[str, Any]:
    """Create, persist and reduce the blocks; each phase may take at most ``timeout`` s.

    The workers spill into a private folder (``local_directory``), so every spill folder
    (also those of killed workers) can be checked once the cluster is closed.
    """
    temp_root = Path(tempfile.mkdtemp(prefix="out-of-core-experiment-"))
    config = Config.load(local_directory=str(temp_root))
    out: dict[str, Any] = {"value": None, "error": None}
    with LocalCluster(n_workers=N_WORKERS, threads_per_worker=1,
                      memory_limit=s["memory_limit_mib"] * MIB, config=config) as cluster, \
            Client(cluster) as client:
        sampler = RssSampler(cluster)
        sampler.start()
        phase, start = "create", time.perf_counter()
        try:
            blocks = client.map(make_block, range(s["blocks"]), seed=seed,
                                length=s["block_length"], pure=False)
            wait(blocks, timeout=timeout)
            for block in blocks:
                if block.exception() is not None:
                    raise block.exception()
            out["create_seconds"] = round(time.perf_counter() - start, 3)
            after_create = client.run(memory_state)
            out["spilled_bytes_after_create"] = sum(
                w["spilled_bytes"] for w in after_create.values())
            out["spill_count_after_create"] = sum(w["spill_count"] for w in after_create.values())
            out["restarts_after_create"] = sum(sup.restarts for sup in cluster.supervisors)

            phase, start = "reduce", time.perf_counter()
            sums = client.map(block_sum, blocks, pure=False)
            total = tree_reduce(sums, lambda group: client.submit(add, *group, pure=False))
            out["value"] = total.result(timeout=timeout)
            out["reduce_seconds"] = round(time.perf_counter() - start, 3)
            cluster.wait_for_workers(N_WORKERS)  # one may be restarting after a memory kill
        except Exception as exc:  # noqa: BLE001 - recorded, and the run is reported as failed
            out["error"] = f"{phase}: {type(exc).__name__}: {exc}"
        final = client.run(memory_state)
        sampler.stop.set()
        sampler.join()
        limit = s["memory_limit_mib"] * MIB
        out["workers"] = [
            {"name": f"worker-{i}", "restarts": sup.restarts,
             "peak_rss": final.get(sup.address, {}).get("peak_rss"),
             "sampled_peak_rss": sampler.peaks[i],
             "sampled_peak_ratio": round(sampler.peaks[i] / limit, 3)}
            for i, sup in enumerate(cluster.supervisors)]
        out["restarts"] = sum(sup.restarts for sup in cluster.supervisors)
    out["spill_dirs_left_after_close"] = len(list(temp_root.iterdir()))
    out["spill_bytes_left_after_close"] = folder_bytes(temp_root)
    shutil.rmtree(temp_root, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- report
def markdown(s: dict[str, int], r: dict[str, Any]) -> str:
    def cell(key: str, fmt: Callable[[Any], str]) -> str:
        return "-" if r.get(key) is None else fmt(r[key])

    verified = "yes" if r["verified"] else f"NO ({r['error'] or 'wrong value'})"
    lines = ["| data | memory limit | blocks | create (s) | reduce (s) | spilled after create "
             "| spills | restarts | verified | spill folders left after close |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| {s['blocks'] * s['block_mib']} MiB | {N_WORKERS} x {s['memory_limit_mib']} MiB "
             f"| {s['blocks']} x {s['block_mib']} MiB "
             f"| {cell('create_seconds', lambda v: f'{v:.2f}')} "
             f"| {cell('reduce_seconds', lambda v: f'{v:.2f}')} "
             f"| {cell('spilled_bytes_after_create', lambda v: f'{v / MIB:.0f} MiB')} "
             f"| {cell('spill_count_after_create', str)} | {r['restarts']} | {verified} "
             f"| {r['spill_dirs_left_after_close']} "
             f"({r['spill_bytes_left_after_close'] / MIB:.0f} MiB, removed) |",
             "",
             "| worker | peak_rss, last process (MiB) | sampled peak, all processes (MiB) "
             "| limit (MiB) | sampled peak / limit | restarts |",
             "| --- | --- | --- | --- | --- | --- |"]
    for w in r["workers"]:
        own = "-" if w["peak_rss"] is None else f"{w['peak_rss'] / MIB:.0f}"
        lines.append(f"| {w['name']} | {own} | {w['sampled_peak_rss'] / MIB:.0f} | "
                     f"{s['memory_limit_mib']} | {w['sampled_peak_ratio']:.2f}x | "
                     f"{w['restarts']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller blocks and limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed to each of creation and reduction (300, quick 90)")
    args = parser.parse_args()
    s = sizes(args.quick)
    timeout = args.timeout or (90.0 if args.quick else 300.0)
    result = run_cluster(s, args.seed, timeout)
    expected = reference_sum(s, args.seed)
    value = result["value"]
    result.update(expected=expected, exact=value == expected,
                  verified=value is not None and bool(np.isclose(value, expected, rtol=1e-12)))
    table = markdown(s, result)
    print(table)
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"out_of_core{suffix}.json").write_text(json.dumps(
        {"quick": args.quick, "seed": args.seed, "sizes": s, "n_workers": N_WORKERS,
         "fan_in": FAN_IN, "timeout": timeout, **result}, indent=2) + "\n")
    (RESULTS / f"out_of_core{suffix}.md").write_text(
        f"# Out of core: {DATA_FACTOR}x the combined memory limit, summed\n\n"
        f"Target: each worker's peak resident memory <= 1.2x its limit (a worker restarted "
        f"after a memory kill starts a new peak).\n\n{table}\n")
    if not result["verified"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
