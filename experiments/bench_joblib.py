#!/usr/bin/env python
"""joblib backends side by side: loky, threading, Dask's backend and distml's, in one process.

Two workloads, each under every backend in turn:

* ``trivial``: ``Parallel(n_jobs=-1)(delayed(trivial)(i) for i in range(10_000))`` with joblib's
  automatic batching (calls/s);
* ``forest``: ``RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=0)`` fitted on
  ``make_classification(50_000, 20, random_state=0)`` (seconds); the fitted forests are checked
  to predict exactly as loky's does.

Backends: ``loky`` (joblib's default, 2 processes on this 2-core machine), ``threading``, Dask's
``"dask"`` backend on a ``distributed`` LocalCluster of 2 worker processes x 1 thread (used as a
user would: no ``scatter=``), and distml's ``"distml"`` backend on a distml cluster of 2 workers
x 1 thread. Ray's backend would join the table if ``ray`` were installed (it is not here: the
column says so). Both clusters stay up for the whole run. Each backend runs each workload once
untimed first (loky's processes start, the workers import scikit-learn); then the backends take
turns, run by run (``--repeat`` times for the trivial calls, half as many for the forest), so
that load from elsewhere on the shared machine weighs on all of them alike. The best run of each
is reported, with every run in the JSON. Targets (issue 7): the forest no slower than loky;
trivial calls at least loky's rate and at least 5x Dask's backend.

Usage::

    .venv/bin/python experiments/bench_joblib.py            # full size (a few minutes)
    .venv/bin/python experiments/bench_joblib.py --quick    # smoke test (small sizes)

Results: a markdown table on stdout and ``experiments/results/bench_joblib.{json,md}``
(``bench_joblib_quick.*`` with ``--quick``). The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("DISTML_LOG_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("loky", "threading", "dask", "distml", "ray")
TITLES = {"loky": "loky", "threading": "threading", "dask": "dask (2x1)",
          "distml": "distml (2x1)", "ray": "ray"}
FULL = {"calls": 10_000, "samples": 50_000, "trees": 200}
QUICK = {"calls": 1_000, "samples": 5_000, "trees": 20}


def trivial(i: int) -> int:
    """The trivial call."""
    return i


def best_of(run: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times, result


# ---------------------------------------------------------------------------- backends
@contextlib.contextmanager
def clusters(names: list[str]) -> Iterator[None]:
    """The clusters that Dask's and distml's backends use, all up at once (idle ones cost
    next to nothing), so that runs of different backends can alternate."""
    with contextlib.ExitStack() as stack:
        if "dask" in names:
            from dask.distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1,
                                                       processes=True, dashboard_address=None))
            stack.enter_context(Client(cluster))
        if "distml" in names:
            import distml

            stack.enter_context(distml.Client(n_workers=2, threads_per_worker=1))
        yield


def unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None."""
    needs = {"dask": "distributed", "ray": "ray"}.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        return f"{needs} not installed"
    return None


def measure(names: list[str], sizes: dict[str, int], repeat: int, X: np.ndarray,
            y: np.ndarray, probe: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every workload under every backend, the backends taking turns run by run: the machine is
    shared, and a load that comes and goes then weighs on every backend alike."""
    calls = sizes["calls"]

    def run_trivial() -> list:
        return Parallel(n_jobs=-1)(delayed(trivial)(i) for i in range(calls))

    def fit_forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=sizes["trees"], n_jobs=-1,
                                      random_state=0).fit(X, y)

    out: dict[str, dict[str, Any]] = {n: {"trivial_runs_s": [], "forest_runs_s": []}
                                      for n in names}
    with clusters(names):
        for name in names:  # warm-up: loky's processes, imports on the workers
            with joblib.parallel_config(backend=name):
                run_trivial()
                RandomForestClassifier(n_estimators=4, n_jobs=-1, random_state=0).fit(
                    X[:2000], y[:2000])
        for _ in range(repeat):
            for name in names:
                with joblib.parallel_config(backend=name):
                    times, results = best_of(run_trivial, 1)
                if results != list(range(calls)):
                    raise AssertionError(f"{name}: wrong results for the trivial calls")
                out[name]["trivial_runs_s"] += times
        for _ in range(max(1, repeat // 2)):
            for name in names:
                with joblib.parallel_config(backend=name):
                    times, forest = best_of(fit_forest, 1)
                out[name]["forest_runs_s"] += times
                out[name]["forest_proba"] = forest.predict_proba(probe)
        print({n: f"{calls / min(r['trivial_runs_s']):,.0f} calls/s, forest "
                  f"{min(r['forest_runs_s']):.2f} s" for n, r in out.items()}, flush=True)
    for res in out.values():
        res["calls_per_s"] = calls / min(res["trivial_runs_s"])
        res["forest_s"] = min(res["forest_runs_s"])
    return out


# ---------------------------------------------------------------------------- report
def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(results: dict[str, dict[str, Any]], sizes: dict[str, int], repeat: int,
          load: dict[str, list[float]] | None = None) -> str:
    def get(name: str, field: str) -> float | None:
        return results.get(name, {}).get(field)

    rate = {n: get(n, "calls_per_s") for n in BACKENDS}
    forest = {n: get(n, "forest_s") for n in BACKENDS}
    head = ("| measurement | unit | " + " | ".join(TITLES[n] for n in BACKENDS)
            + " | distml / loky | distml / dask | target | met |")
    lines = [f"# joblib backends ({platform.machine()}, {os.cpu_count()} cores; best of {repeat})",
             ""]
    if load:
        lines += ["Load average (1, 5, 15 min) at the start: "
                  + ", ".join(f"{x:.2f}" for x in load["start"]) + "; at the end: "
                  + ", ".join(f"{x:.2f}" for x in load["end"]) + ".", ""]
    lines += [head, "|" + "---|" * (len(BACKENDS) + 6)]

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    r_loky, r_dask = ratio(rate["distml"], rate["loky"]), ratio(rate["distml"], rate["dask"])
    met = None if r_loky is None else (r_loky >= 1 and (r_dask is None or r_dask >= 5))
    lines.append(f"| {sizes['calls']:,} trivial calls | calls/s | "
                 + " | ".join(_fmt(rate[n], 0) for n in BACKENDS)
                 + f" | {_fmt(r_loky, 2)}x | {_fmt(r_dask, 2)}x | >= loky and >= 5x dask | "
                 + ("n/a" if met is None else "yes" if met else "no") + " |")
    # for time, the ratio is other / distml: above 1, distml is faster
    f_loky, f_dask = ratio(forest["loky"], forest["distml"]), ratio(forest["dask"],
                                                                   forest["distml"])
    met = None if f_loky is None else f_loky >= 1
    lines.append(f"| RandomForestClassifier({sizes['trees']}) on {sizes['samples']:,}x20 | s | "
                 + " | ".join(_fmt(forest[n], 2) for n in BACKENDS)
                 + f" | {_fmt(f_loky, 2)}x | {_fmt(f_dask, 2)}x | <= loky | "
                 + ("n/a" if met is None else "yes" if met else "no") + " |")
    lines.append("")
    medians = {n: sizes["calls"] / statistics.median(results[n]["trivial_runs_s"])
               for n in BACKENDS if results.get(n, {}).get("trivial_runs_s")}
    if medians:
        lines.append("Median rate of the trivial calls over the runs (load-sensitive): "
                     + ", ".join(f"{TITLES[n]} {v:,.0f}/s" for n, v in medians.items()) + ".")
    lines.append("Ratios: above 1 means distml does better (for seconds, the ratio is the "
                 "peer's time over distml's).")
    for name in BACKENDS:
        note = results.get(name, {}).get("note")
        if note:
            lines.append(f"{TITLES[name]}: {note}.")
    same = [TITLES[n] for n in BACKENDS if results.get(n, {}).get("same_forest_as_loky")]
    if same:
        lines.append("Forests predicting exactly as loky's: " + ", ".join(same) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per workload (best kept; default 5, 2 with --quick; "
                             "the forest gets half as many)")
    parser.add_argument("--only", nargs="+", choices=BACKENDS, help="run only these backends")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (2 if args.quick else 5)
    X, y = make_classification(n_samples=sizes["samples"], n_features=20, random_state=0)
    probe = X[:500]
    results: dict[str, dict[str, Any]] = {}
    runnable = []
    for name in args.only or BACKENDS:
        reason = unavailable(name)
        if reason:
            results[name] = {"note": f"not run ({reason})"}
            print(f"{name}: {reason}", flush=True)
        else:
            runnable.append(name)
    load = {"start": list(os.getloadavg())}
    results.update(measure(runnable, sizes, repeat, X, y, probe))
    load["end"] = list(os.getloadavg())
    if "loky" in results and "forest_proba" in results["loky"]:
        for name, res in results.items():
            if "forest_proba" in res:
                res["same_forest_as_loky"] = bool(np.array_equal(res["forest_proba"],
                                                                 results["loky"]["forest_proba"]))
    for res in results.values():
        res.pop("forest_proba", None)
    text = table(results, sizes, repeat, load)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_joblib_quick" if args.quick else "bench_joblib"
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"sizes": sizes, "repeat": repeat, "machine": platform.machine(), "load_average": load,
         "cpu_count": os.cpu_count(), "versions": {
             "joblib": joblib.__version__, "numpy": np.__version__}, "results": results},
        indent=2) + "\n")
    print(f"wrote {RESULTS / (stem + '.md')} and {RESULTS / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
