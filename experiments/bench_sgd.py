#!/usr/bin/env python
"""distml SGDClassifier against dask-ml Incremental and scikit-learn (one process).

Data: ``make_classification(n_samples=2_000_000, n_features=50, random_state=0)`` in
100,000-row blocks; the last 10% of the rows are held out for accuracy (``--quick``:
200,000 rows in 10,000-row blocks).  The dataset is generated once here, exactly as that
call defines it (its rows come from one random stream, so it cannot be generated block by
block on the workers without changing it), and the training blocks are placed on the
workers before the clock starts (distml: ``client.scatter``; dask: ``persist``); each
cluster system also runs a small warm-up fit (imports on the workers) first.

Systems, all with scikit-learn's SGD defaults (hinge loss, ``alpha=1e-4``, "optimal"
learning rate, ``tol=None``, ``random_state=0``; the cluster systems are given
``classes`` so that neither spends a pass finding the labels):

* distml ``SGDClassifier`` for 1 and 5 epochs, 2 workers x 1 thread;
* dask-ml ``Incremental(SGDClassifier)`` for 1 epoch on a warm 2-worker x 1-thread dask
  LocalCluster (``fit`` is one pass over the blocks), when ``dask_ml`` imports, else n/a;
* a scikit-learn ``partial_fit`` loop over the same blocks in this process, 1 and 5 epochs;
* scikit-learn ``SGDClassifier(max_iter=1)`` and ``max_iter=5`` ``.fit`` on the whole array.

The systems take turns, run by run (``--repeat`` turns, both clusters up throughout), so
that load from other work on a shared machine weighs on all of them alike.  Reported:
seconds per epoch (best of ``--repeat``, every time in the JSON), held-out accuracy, and the
distml epoch time as a fraction of dask-ml's and of the ``partial_fit`` loop's.

Usage::

    .venv/bin/python experiments/bench_sgd.py            # full size (a couple of minutes)
    .venv/bin/python experiments/bench_sgd.py --quick    # small, smoke test

Results: a markdown table on stdout and ``experiments/results/bench_sgd.{json,md}``
(``bench_sgd_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier as SkSGDClassifier

from estimator_harness import (dask_data, distml_data, load_note, take_turns,  # noqa: E402
                               warm_up_sample)

RESULTS = Path(__file__).parent / "results"
LOAD_AT_START = os.getloadavg()[0]
SGD = dict(tol=None, random_state=0)


def row(system: str, epochs: int, seconds: float | None, accuracy: float | None,
        note: str | None = None) -> dict[str, Any]:
    out = {"system": system, "epochs": epochs, "seconds": seconds,
           "seconds_per_epoch": None if seconds is None else seconds / epochs,
           "accuracy": accuracy}
    return {**out, "note": note} if note else out


def systems(X: np.ndarray, y: np.ndarray, chunk: int, stack: ExitStack
            ) -> list[tuple[str, int, Callable[[], Any], Callable[[Any], Any]]]:
    """``(system, epochs, fit, the fitted model's scikit-learn estimator)`` for every timed
    run, the clusters started, loaded and warmed up (kept open by ``stack``)."""
    import distml.array as da
    from distml.estimators.linear_model._sgd import SGDClassifier

    blocks = [(X[s:s + chunk], y[s:s + chunk]) for s in range(0, len(X), chunk)]
    classes = np.unique(y)

    def loop(epochs: int) -> SkSGDClassifier:
        model = SkSGDClassifier(**SGD)
        for _ in range(epochs):
            for Xb, yb in blocks:
                model.partial_fit(Xb, yb, classes=classes)
        return model

    Xd, yd = stack.enter_context(distml_data(X, y, chunk))
    SGDClassifier(n_epochs=1, **SGD).fit(*warm_up_sample(X, y, 4000, da.from_array))
    out = [("distml SGDClassifier (2 workers x 1 thread)", epochs,
            lambda e=epochs: SGDClassifier(n_epochs=e, **SGD).fit(Xd, yd, classes=[0, 1]),
            lambda m: m) for epochs in (1, 5)]
    name = "dask-ml Incremental(SGDClassifier) (2 workers x 1 thread)"
    try:
        import dask.array as dsa
        from dask_ml.wrappers import Incremental
    except ImportError as exc:
        note = f"n/a ({exc})"
        out.append((name, 1, None, lambda m: note))
    else:
        warnings.filterwarnings("ignore", message="Sending large graph")
        Xk, yk = stack.enter_context(dask_data(X, y, chunk))
        Incremental(SkSGDClassifier(**SGD)).fit(*warm_up_sample(X, y, 4000, dsa.from_array),
                                                classes=classes)
        out.append((name, 1, lambda: Incremental(SkSGDClassifier(**SGD)).fit(
            Xk, yk, classes=classes), lambda m: m.estimator_))
    out += [("scikit-learn partial_fit loop (1 process)", epochs, lambda e=epochs: loop(e),
             lambda m: m) for epochs in (1, 5)]
    out += [(f"scikit-learn SGDClassifier(max_iter={epochs}).fit", epochs,
             lambda e=epochs: SkSGDClassifier(max_iter=e, **SGD).fit(X, y), lambda m: m)
            for epochs in (1, 5)]
    return out


def run_in_turns(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                 chunk: int, repeat: int) -> list[dict[str, Any]]:
    """Every system once per turn, ``repeat`` turns, best time kept: load that comes and goes
    on a shared machine then weighs on all systems alike instead of on whichever ran then."""
    with ExitStack() as stack:
        runs = systems(X, y, chunk, stack)
        times, models = take_turns([fit for _, _, fit, _ in runs], repeat)
        out = []
        for (system, epochs, fit, fitted), t, model in zip(runs, times, models):
            if fit is None:
                out.append(row(system, epochs, None, None, note=fitted(None)))
            else:
                out.append(row(system, epochs, min(t), float(fitted(model).score(X_test,
                                                                                 y_test))))
                out[-1]["all_seconds"] = t
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="fits per system (best kept)")
    args = parser.parse_args()
    n, chunk = (200_000, 10_000) if args.quick else (2_000_000, 100_000)
    X, y = make_classification(n_samples=n, n_features=50, random_state=0)
    n_train = n - n // 10
    X, y, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    runs = run_in_turns(X, y, X_test, y_test, chunk, args.repeat)

    def per_epoch(system: str, epochs: int = 1) -> float | None:
        return next((r["seconds_per_epoch"] for r in runs
                     if r["system"].startswith(system) and r["epochs"] == epochs), None)

    dask_epoch, loop_epoch = per_epoch("dask-ml"), per_epoch("scikit-learn partial_fit")
    for r in runs:
        r["vs_dask_ml"] = (None if dask_epoch is None or r["seconds_per_epoch"] is None
                           else r["seconds_per_epoch"] / dask_epoch)
        r["vs_partial_fit_loop"] = (None if r["seconds_per_epoch"] is None
                                    else r["seconds_per_epoch"] / loop_epoch)
        reference = next(s["accuracy"] for s in runs if s["epochs"] == r["epochs"]
                         and s["system"].startswith("scikit-learn SGDClassifier"))
        r["accuracy_minus_sklearn"] = (None if r["accuracy"] is None
                                       else r["accuracy"] - reference)
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = [f"# SGDClassifier: {n_train:,} x 50 training rows in {chunk:,}-row blocks, "
             f"{n - n_train:,} held out ({platform.machine()}, best of {args.repeat})", "",
             load_note(LOAD_AT_START), "",
             "| system | epochs | s / epoch | x dask-ml | x partial_fit loop | accuracy "
             "| acc. - sklearn fit |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['system']} | {r['epochs']} | {fmt(r['seconds_per_epoch'], '.3f')}"
                     f" | {fmt(r['vs_dask_ml'], '.2f')} | {fmt(r['vs_partial_fit_loop'], '.2f')}"
                     f" | {fmt(r['accuracy'], '.4f')} | {fmt(r['accuracy_minus_sklearn'], '+.4f')}"
                     " |")
    lines += [f"\n{r['system']}: {r['note']}" for r in runs if "note" in r]
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_sgd_quick" if args.quick else "bench_sgd"
    (RESULTS / f"{stem}.md").write_text(table)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"load_average_at_start": LOAD_AT_START, "load_average_at_end": os.getloadavg()[0],
         "n_samples": n, "n_train": n_train,
         "n_features": 50, "block_rows": chunk, "repeat": args.repeat, "results": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
