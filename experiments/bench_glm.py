#!/usr/bin/env python
"""distml LogisticRegression against scikit-learn (one process) and dask-ml (2-worker dask).

Data: ``make_classification(n_samples=2_000_000, n_features=50, random_state=0)`` in
200,000-row chunks (``--quick``: 200,000 rows in 20,000-row chunks).  The cluster systems get
the blocks placed on their workers (distml: ``client.scatter``; dask: ``persist``) and run a
small warm-up fit (module imports on the workers) before the clock starts, so only ``fit``
is timed.  distml runs 2 workers x 1 thread; scikit-learn runs
``LogisticRegression()`` (lbfgs) in this process with its default threading; dask-ml runs
``LogisticRegression(solver="lbfgs")`` on a 2-worker x 1-thread dask LocalCluster when
``dask_ml`` imports (else "n/a").  Reported: fit time (best of ``--repeat``), L-BFGS
iterations, and the max relative coefficient difference to scikit-learn
(``max|coef - coef_sklearn| / max|coef_sklearn|``).

Usage::

    .venv/bin/python experiments/bench_glm.py            # full size (about a minute)
    .venv/bin/python experiments/bench_glm.py --quick    # small, smoke test

Results: a markdown table on stdout and ``experiments/results/bench_glm.{json,md}``
(``bench_glm_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification

from estimator_harness import best_of, dask_data, distml_data, warm_up_sample  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LOAD_AT_START = os.getloadavg()[0]


def rel_diff(coef: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.ravel(coef) - np.ravel(ref))) / np.max(np.abs(ref)))


def run_sklearn(X: np.ndarray, y: np.ndarray, repeat: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    seconds, model = best_of(lambda: LogisticRegression().fit(X, y), repeat)
    return {"system": "scikit-learn (1 process)", "seconds": seconds,
            "n_iter": int(model.n_iter_[0]), "coef": model.coef_}


def run_distml(X: np.ndarray, y: np.ndarray, chunk: int, repeat: int) -> dict[str, Any]:
    import distml.array as da
    from distml.estimators.linear_model._glm import LogisticRegression

    with distml_data(X, y, chunk) as (Xd, yd):
        LogisticRegression().fit(*warm_up_sample(X, y, 2000, da.from_array))
        seconds, model = best_of(lambda: LogisticRegression().fit(Xd, yd), repeat)
    return {"system": "distml (2 workers x 1 thread)", "seconds": seconds,
            "n_iter": int(model.n_iter_[0]), "coef": model.coef_}


def run_dask_ml(X: np.ndarray, y: np.ndarray, chunk: int, repeat: int) -> dict[str, Any]:
    name = "dask-ml lbfgs (2 workers x 1 thread)"
    try:
        import dask.array as dsa
        from dask_ml.linear_model import LogisticRegression
    except ImportError as exc:
        return {"system": name, "seconds": None, "n_iter": None, "coef": None,
                "note": f"n/a ({exc})"}
    with dask_data(X, y, chunk) as (Xd, yd):
        LogisticRegression(solver="lbfgs").fit(*warm_up_sample(X, y, 2000, dsa.from_array))
        seconds, model = best_of(lambda: LogisticRegression(solver="lbfgs").fit(Xd, yd),
                                 repeat)
    n_iter = getattr(model, "n_iter_", None)
    return {"system": name, "seconds": seconds,
            "n_iter": None if n_iter is None else int(np.ravel(n_iter)[0]),
            "coef": np.asarray(model.coef_)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="fits per system (best kept)")
    args = parser.parse_args()
    n, chunk = (200_000, 20_000) if args.quick else (2_000_000, 200_000)
    X, y = make_classification(n_samples=n, n_features=50, random_state=0)
    runs = [run_sklearn(X, y, args.repeat)]
    gc.collect()
    runs.append(run_distml(X, y, chunk, args.repeat))
    gc.collect()
    runs.append(run_dask_ml(X, y, chunk, args.repeat))
    ref = runs[0]["coef"]
    rows = []
    for r in runs:
        rows.append({"system": r["system"], "seconds": r["seconds"], "n_iter": r["n_iter"],
                     "max_rel_coef_diff": None if r["coef"] is None else rel_diff(r["coef"], ref),
                     **({"note": r["note"]} if "note" in r else {})})
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = [f"# LogisticRegression fit: {n:,} x 50, {chunk:,}-row chunks "
             f"({platform.machine()}, best of {args.repeat})", "",
             f"Load average (1 min) when the run started: {LOAD_AT_START:.2f} on "
             f"{os.cpu_count()} cores (other work on the machine skews every figure).", "",
             "| system | fit time (s) | iterations | max rel. coef diff vs sklearn |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['system']} | {fmt(r['seconds'], '.2f')} | "
                     f"{fmt(r['n_iter'], 'd')} | {fmt(r['max_rel_coef_diff'], '.2e')} |")
    for r in rows:
        if "note" in r:
            lines.append(f"\n{r['system']}: {r['note']}")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_glm_quick" if args.quick else "bench_glm"
    (RESULTS / f"{stem}.md").write_text(table)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"load_average_at_start": LOAD_AT_START, "n_samples": n, "n_features": 50,
         "chunk_rows": chunk, "repeat": args.repeat, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
