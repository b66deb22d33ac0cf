#!/usr/bin/env python
"""distml LogisticRegression against scikit-learn (one process) and dask-ml (2-worker dask).

Data: ``make_classification(n_samples=2_000_000, n_features=50, random_state=0)`` in
200,000-row chunks (``--quick``: 200,000 rows in 20,000-row chunks).  The cluster systems get
the blocks placed on their workers (distml: ``client.scatter``; dask: ``persist``) and run a
small warm-up fit (module imports on the workers) before the clock starts, so only ``fit``
is timed; the systems take turns, run by run (``--repeat`` turns, both clusters up
throughout), so that load from other work on a shared machine weighs on all alike.  distml runs 2 workers x 1 thread; scikit-learn runs
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
import json
import os
import platform
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.datasets import make_classification

from estimator_harness import (dask_data, distml_data, load_note, take_turns,  # noqa: E402
                               warm_up_sample)

RESULTS = Path(__file__).parent / "results"
LOAD_AT_START = os.getloadavg()[0]


def rel_diff(coef: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.ravel(coef) - np.ravel(ref))) / np.max(np.abs(ref)))


def systems(X: np.ndarray, y: np.ndarray, chunk: int, stack: ExitStack
            ) -> list[tuple[str, Callable[[], Any] | None, str | None]]:
    """``(system, fit, note)`` for every timed system, the clusters started, loaded and
    warmed up (kept open by ``stack``); ``fit`` is None (and ``note`` says why) when a peer
    is not installed."""
    import distml.array as da
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    from distml.estimators.linear_model._glm import LogisticRegression

    out: list[tuple[str, Callable[[], Any] | None, str | None]] = [
        ("scikit-learn (1 process)", lambda: SkLogisticRegression().fit(X, y), None)]
    Xd, yd = stack.enter_context(distml_data(X, y, chunk))
    LogisticRegression().fit(*warm_up_sample(X, y, 2000, da.from_array))
    out.append(("distml (2 workers x 1 thread)", lambda: LogisticRegression().fit(Xd, yd),
                None))
    name = "dask-ml lbfgs (2 workers x 1 thread)"
    try:
        import dask.array as dsa
        from dask_ml.linear_model import LogisticRegression as DaskLogisticRegression
    except ImportError as exc:
        out.append((name, None, f"n/a ({exc})"))
        return out
    Xk, yk = stack.enter_context(dask_data(X, y, chunk))
    DaskLogisticRegression(solver="lbfgs").fit(*warm_up_sample(X, y, 2000, dsa.from_array))
    out.append((name, lambda: DaskLogisticRegression(solver="lbfgs").fit(Xk, yk), None))
    return out


def run_in_turns(X: np.ndarray, y: np.ndarray, chunk: int, repeat: int
                 ) -> list[dict[str, Any]]:
    """Every system once per turn, ``repeat`` turns, best time kept: load that comes and goes
    on a shared machine then weighs on all systems alike instead of on whichever ran then."""
    with ExitStack() as stack:
        runs = systems(X, y, chunk, stack)
        times, models = take_turns([fit for _, fit, _ in runs], repeat)
    out = []
    for (system, fit, note), t, model in zip(runs, times, models):
        if fit is None:
            out.append({"system": system, "seconds": None, "n_iter": None, "coef": None,
                        "note": note})
            continue
        n_iter = getattr(model, "n_iter_", None)
        out.append({"system": system, "seconds": min(t), "all_seconds": t,
                    "n_iter": None if n_iter is None else int(np.ravel(n_iter)[0]),
                    "coef": np.asarray(model.coef_)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="fits per system (best kept)")
    args = parser.parse_args()
    n, chunk = (200_000, 20_000) if args.quick else (2_000_000, 200_000)
    X, y = make_classification(n_samples=n, n_features=50, random_state=0)
    runs = run_in_turns(X, y, chunk, args.repeat)
    ref, ref_seconds = runs[0]["coef"], runs[0]["seconds"]
    rows = []
    for r in runs:
        rows.append({"system": r["system"], "seconds": r["seconds"],
                     "vs_sklearn": None if r["seconds"] is None else r["seconds"] / ref_seconds,
                     "all_seconds": r.get("all_seconds"), "n_iter": r["n_iter"],
                     "max_rel_coef_diff": None if r["coef"] is None else rel_diff(r["coef"], ref),
                     **({"note": r["note"]} if "note" in r else {})})
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = [f"# LogisticRegression fit: {n:,} x 50, {chunk:,}-row chunks "
             f"({platform.machine()}, best of {args.repeat})", "",
             load_note(LOAD_AT_START), "",
             "| system | fit time (s) | x sklearn | iterations | max rel. coef diff vs sklearn |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['system']} | {fmt(r['seconds'], '.2f')} | "
                     f"{fmt(r['vs_sklearn'], '.2f')} | "
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
        {"load_average_at_start": LOAD_AT_START, "load_average_at_end": os.getloadavg()[0],
         "n_samples": n, "n_features": 50,
         "chunk_rows": chunk, "repeat": args.repeat, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
