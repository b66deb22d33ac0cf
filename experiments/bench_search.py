#!/usr/bin/env python
"""distml GridSearchCV against scikit-learn (``n_jobs=2``) and dask-ml, plus a chunked search.

Grid (the issue's): ``load_digits``; ``Pipeline(StandardScaler -> PCA(n_components in 10, 20,
30, 40) -> LogisticRegression(C in 0.01, 0.1, 1, 10, max_iter=200))``; ``cv=3``; 16 candidates,
48 candidate-folds.  Systems, all in this run on the same machine:

* scikit-learn ``GridSearchCV(n_jobs=2)`` (loky processes) in this process;
* distml ``GridSearchCV`` on a 2-worker x 1-thread local cluster;
* dask-ml ``GridSearchCV`` on a 2-worker x 1-thread dask LocalCluster (when ``dask_ml``
  imports, else n/a).

The systems take turns, ``--repeat`` rounds with the order rotating, so that load from
elsewhere on a shared machine falls on all of them alike.  In its turn a system is started
alone (no other system's processes alive: an idle dask cluster alone takes about 100 ms of CPU
a second, 5% of a 2-core machine, which slowed whichever system ran beside it), runs its first
search ("first use": worker imports, loky start), is left to settle for ``SETTLE`` seconds
(what a start leaves running, such as distml's spare worker process or the end of the last
system's shutdown, is over by then), runs ``WARM_PER_TURN`` more ("warm"), and is shut down.
First use is the median over the rounds; warm is the best, with the median too.  Every system
must find the same best parameters and best score, and the same mean test score for every
candidate.

Chunked part: a k-fold search (``LogisticRegression``, ``C`` in 0.1, 1; ``cv=3``) over a
distml array made on the workers that is larger than one worker's memory limit (full: 1.2 GB
on 2 workers x 1 GB; ``--quick``: 720 MB on 2 x 700 MB; 10 MB blocks; a worker process alone
takes about 130 MB), checked against scikit-learn's
``LogisticRegression`` on the same block folds in this process.

Usage::

    .venv/bin/python experiments/bench_search.py            # full (a few minutes)
    .venv/bin/python experiments/bench_search.py --quick    # smoke test

Results: a markdown table on stdout and ``experiments/results/bench_search.{json,md}``
(``bench_search_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.datasets import load_digits

RESULTS = Path(__file__).parent / "results"
GRID = {"pca__n_components": [10, 20, 30, 40], "clf__C": [0.01, 0.1, 1, 10]}
TARGETS = {"scikit-learn": 0.7, "dask-ml": 0.5}
SETTLE = 2.0
WARM_PER_TURN = 2


def pipeline() -> Any:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    return Pipeline([("scale", StandardScaler()), ("pca", PCA()),
                     ("clf", LogisticRegression(max_iter=200))])


def _sklearn_system(X: np.ndarray, y: np.ndarray, stack: ExitStack) -> tuple[str, Callable]:
    from joblib.externals.loky import get_reusable_executor
    from sklearn.model_selection import GridSearchCV
    stack.callback(lambda: get_reusable_executor().shutdown(wait=True))  # loky's pool
    return ("scikit-learn GridSearchCV(n_jobs=2)",
            lambda: GridSearchCV(pipeline(), GRID, cv=3, n_jobs=2).fit(X, y))


def _distml_system(X: np.ndarray, y: np.ndarray, stack: ExitStack) -> tuple[str, Callable]:
    from distml import Client
    from distml.estimators.model_selection import GridSearchCV
    stack.enter_context(Client(n_workers=2, threads_per_worker=1))  # the default client

    def search() -> Any:
        return GridSearchCV(pipeline(), GRID, cv=3, progress=False).fit(X, y)
    return "distml GridSearchCV (2 workers x 1 thread)", search


def _dask_ml_system(X: np.ndarray, y: np.ndarray, stack: ExitStack
                    ) -> tuple[str, Callable | str]:
    name = "dask-ml GridSearchCV (2 workers x 1 thread)"
    try:
        from dask.distributed import Client, LocalCluster
        from dask_ml.model_selection import GridSearchCV
    except ImportError as exc:
        return name, f"n/a ({exc})"
    # dask's nanny leaves its worker settings (MALLOC_TRIM_THRESHOLD_=65536, *_NUM_THREADS=1)
    # in this process's environment, where pools started later would inherit them: a loky
    # pool started after a dask turn ran 0.70-0.81 s searches instead of 0.50-0.60 s
    saved = dict(os.environ)
    stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
    cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1,
                                               processes=True, dashboard_address=None))
    stack.enter_context(Client(cluster))  # dask-ml uses the default dask client

    def search() -> Any:
        return GridSearchCV(pipeline(), GRID, cv=3).fit(X, y)
    return name, search


def run_grid(X: np.ndarray, y: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    """``repeat`` rounds in which each system in turn (the order rotating) starts alone, runs
    its first search, settles, runs ``WARM_PER_TURN`` warm searches, and shuts down."""
    makers = [_sklearn_system, _distml_system, _dask_ml_system]
    notes: dict[str, str] = {}
    first: dict[str, list[float]] = {}
    warm: dict[str, list[float]] = {}
    found: dict[str, Any] = {}
    for r in range(repeat):
        for make in makers[r % len(makers):] + makers[:r % len(makers)]:
            with ExitStack() as stack:
                name, search = make(X, y, stack)
                if isinstance(search, str):
                    notes[name] = search
                    continue
                gc.collect()
                start = time.perf_counter()
                search()
                first.setdefault(name, []).append(time.perf_counter() - start)
                time.sleep(SETTLE)
                for _ in range(WARM_PER_TURN):
                    gc.collect()
                    start = time.perf_counter()
                    found[name] = search()
                    warm.setdefault(name, []).append(time.perf_counter() - start)
    runs: list[dict[str, Any]] = [{"system": name, "note": note} for name, note in notes.items()]
    for name, model in found.items():
        out = {"system": name, "first_use_s": float(np.median(first[name])),
               "first_use_all_s": first[name], "warm_s": min(warm[name]),
               "warm_median_s": float(np.median(warm[name])), "warm_all_s": warm[name],
               "best_params": {k: float(v) for k, v in model.best_params_.items()},
               "best_score": float(model.best_score_),
               "mean_test_score": [float(s) for s in model.cv_results_["mean_test_score"]]}
        if name.startswith("distml"):
            out["prefix_fits"] = model.n_prefix_fits_
        runs.append(out)
    order = ("scikit-learn", "distml", "dask-ml")
    return sorted(runs, key=lambda r: next(i for i, o in enumerate(order)
                                           if r["system"].startswith(o)))


def run_chunked(quick: bool) -> dict[str, Any]:
    """A block k-fold search over an array bigger than one worker's memory limit, and the same
    folds fitted with scikit-learn in this process."""
    import distml.array as da
    from distml import Client
    from distml.estimators.linear_model import LogisticRegression
    from distml.estimators.model_selection import GridSearchCV, block_folds
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression
    from sklearn.model_selection import GridSearchCV as SkGridSearchCV

    rows, cols, chunk, limit = ((1_800_000, 50, 25_000, "700MB") if quick
                                else (3_000_000, 50, 25_000, "1GB"))
    grid = {"C": [0.1, 1.0]}
    with Client(n_workers=2, threads_per_worker=1, memory_limit=limit) as client:
        X = da.random.normal(size=(rows, cols), chunks=(chunk, cols), seed=0)
        w = np.random.default_rng(0).normal(size=cols)
        noise = da.random.normal(size=(rows,), chunks=(chunk,), seed=1)
        y = ((X @ w + 2.0 * noise) > 0).astype(np.int64)
        X, y = client.persist([X, y])
        per_worker = next(iter(client.scheduler_info()["workers"].values())).get("memory_limit")
        start = time.perf_counter()
        search = GridSearchCV(LogisticRegression(), grid, cv=3, progress=False).fit(X, y)
        seconds = time.perf_counter() - start
        # the reference needs the data here: fetch it a few blocks at a time, so the workers
        # never serialize more than that at once
        X_local, y_local = (np.concatenate([client.gather(a.dask[(a.name, i, *[0] * (a.ndim - 1))])
                                            for i in range(a.numblocks[0])]) for a in (X, y))
    folds = block_folds(rows // chunk, 3)
    bounds = np.arange(0, rows + 1, chunk)
    index = lambda blocks: np.concatenate([np.arange(bounds[b], bounds[b + 1])  # noqa: E731
                                           for b in blocks])
    start = time.perf_counter()
    ref = SkGridSearchCV(SkLogisticRegression(), grid,
                         cv=[(index(tr), index(te)) for tr, te in folds]).fit(X_local, y_local)
    sk_seconds = time.perf_counter() - start
    return {"rows": rows, "cols": cols, "data_mb": rows * cols * 8 / 1e6,
            "worker_memory_limit": limit, "worker_memory_limit_bytes": per_worker,
            "seconds": seconds, "best_params": search.best_params_,
            "best_score": float(search.best_score_), "sklearn_in_memory_seconds": sk_seconds,
            "sklearn_best_params": ref.best_params_, "sklearn_best_score": float(ref.best_score_),
            "max_abs_score_diff": float(np.max(np.abs(search.cv_results_["mean_test_score"]
                                                      - ref.cv_results_["mean_test_score"])))}


def fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(runs: list[dict], chunked: dict | None, repeat: int) -> str:
    ref = runs[0]
    lines = ["# GridSearchCV: load_digits, StandardScaler -> PCA -> LogisticRegression, "
             f"16 candidates x cv=3 ({platform.machine()}; {repeat} rounds, the systems taking "
             f"turns, each alone while it runs: first use = median, warm = best of "
             f"{repeat * WARM_PER_TURN})", "",
             "| system | first use (s) | warm (s) | warm median (s) | distml warm / this | "
             "distml median / this | best params | best score | best same as scikit-learn | "
             "max abs diff of mean test scores |",
             "|---|---:|---:|---:|---:|---:|---|---:|---|---:|"]
    ours = next(r for r in runs if r["system"].startswith("distml"))
    for r in runs:
        if "warm_s" not in r:
            lines.append(f"| {r['system']} | {r['note']} | | | | | | | | |")
            continue
        same = r["best_params"] == ref["best_params"] and r["best_score"] == ref["best_score"]
        diff = float(np.max(np.abs(np.subtract(r["mean_test_score"], ref["mean_test_score"]))))
        ratio = "" if r is ours else f"{ours['warm_s'] / r['warm_s']:.2f}x"
        median = "" if r is ours else f"{ours['warm_median_s'] / r['warm_median_s']:.2f}x"
        params = ", ".join(f"{k}={v:g}" for k, v in sorted(r["best_params"].items()))
        lines.append(f"| {r['system']} | {r['first_use_s']:.2f} | {r['warm_s']:.2f} | "
                     f"{r['warm_median_s']:.2f} | {ratio} | {median} | "
                     f"{params} | {r['best_score']:.4f} | {'yes' if same else 'NO'} | "
                     f"{diff:.1e} |")
    lines += ["", "Targets: distml warm <= 0.7x scikit-learn's, <= 0.5x dask-ml's; "
              f"distml fitted {ours.get('prefix_fits')} pipeline prefixes "
              "(scikit-learn: 96, one scaler and one PCA per candidate-fold)."]
    if chunked is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"## Chunked: {chunked['rows']:,} x {chunked['cols']} float64 "
              f"({chunked['data_mb']:.0f} MB) on 2 workers x {chunked['worker_memory_limit']}",
              "", "| system | seconds | best params | best score |", "|---|---:|---|---:|",
              f"| distml GridSearchCV, block 3-fold, distml LogisticRegression | "
              f"{chunked['seconds']:.2f} | {chunked['best_params']} | "
              f"{chunked['best_score']:.4f} |",
              f"| scikit-learn GridSearchCV in this process, same folds | "
              f"{chunked['sklearn_in_memory_seconds']:.2f} | {chunked['sklearn_best_params']} | "
              f"{chunked['sklearn_best_score']:.4f} |", "",
              f"Max |mean test score difference|: {chunked['max_abs_score_diff']:.1e}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller chunked data, 1 repeat")
    parser.add_argument("--repeat", type=int, default=None, help="warm searches per system")
    parser.add_argument("--skip-chunked", action="store_true",
                        help="only the digits grid (results not written)")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 7)
    warnings.filterwarnings("ignore", category=UserWarning)
    from sklearn.exceptions import ConvergenceWarning
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X, y = load_digits(return_X_y=True)
    load_before = os.getloadavg()
    runs = run_grid(X, y, repeat)
    load_grid = os.getloadavg()
    gc.collect()
    chunked = None if args.skip_chunked else run_chunked(args.quick)
    text = table(runs, chunked, repeat)
    text += (f"\nLoad average before the grid and after it (1 min): {load_before[0]:.1f}, "
             f"{load_grid[0]:.1f}.")
    load = os.getloadavg()
    text += (f"\nLoad average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, "
             f"{load[2]:.1f} on {os.cpu_count()} cores (a shared machine: timings are noisy).\n")
    print(text)
    if args.skip_chunked:
        return
    ours = runs[1]
    peers = [(peer, r) for peer, r in zip(("scikit-learn", "dask-ml"), (runs[0], runs[2]))
             if "warm_s" in r]
    ratios = {peer: ours["warm_s"] / r["warm_s"] for peer, r in peers}
    median_ratios = {peer: ours["warm_median_s"] / r["warm_median_s"] for peer, r in peers}
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_search_quick" if args.quick else "bench_search"
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"repeat": repeat, "grid": GRID, "results": runs, "warm_ratio_distml_over": ratios,
         "warm_median_ratio_distml_over": median_ratios,
         "targets": TARGETS, "chunked": chunked}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
