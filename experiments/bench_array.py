#!/usr/bin/env python
"""distml.array against dask.array (2-worker distributed LocalCluster) and plain numpy.

Operations (float64):

* ``(x + x.T).sum()`` and ``x.mean(axis=0)`` on a 20000x20000 array in 2000x2000 chunks;
* ``X.T @ X`` and ``X.std(axis=0)`` on a 2,000,000x50 array in 200,000-row chunks.

The cluster systems create the data on the workers (random, chunked), persist it, then
time only the operation; numpy builds the data in this process.  Each timing is the best
of ``--repeat`` runs.  Each system's cluster is closed before the next one starts.

Usage::

    .venv/bin/python experiments/bench_array.py            # full sizes (a few minutes)
    .venv/bin/python experiments/bench_array.py --quick    # small sizes, smoke test

Results: a markdown table on stdout and ``experiments/results/bench_array.{json,md}``
(``bench_array_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).parent / "results"
OPS = ["(x + x.T).sum()", "x.mean(axis=0)", "X.T @ X", "X.std(axis=0)"]


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"square": 2000, "square_chunk": 500, "rows": 200_000, "row_chunk": 20_000,
                "cols": 50}
    return {"square": 20_000, "square_chunk": 2000, "rows": 2_000_000, "row_chunk": 200_000,
            "cols": 50}


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def operations(x: Any, X: Any, compute: Callable[[Any], Any]) -> dict[str, Callable[[], Any]]:
    return {
        OPS[0]: lambda: compute((x + x.T).sum()),
        OPS[1]: lambda: compute(x.mean(axis=0)),
        OPS[2]: lambda: compute(X.T @ X),
        OPS[3]: lambda: compute(X.std(axis=0)),
    }


def bench_distml(s: dict, repeat: int) -> dict[str, float]:
    import distml.array as da
    from distml import Client
    with Client(n_workers=2, threads_per_worker=1) as client:
        x = da.random.random((s["square"],) * 2, chunks=s["square_chunk"], seed=0).persist()
        X = da.random.random((s["rows"], s["cols"]), chunks=(s["row_chunk"], s["cols"]),
                             seed=1).persist()
        client.gather([f for f in x.dask.values()] + [f for f in X.dask.values()])
        ops = operations(x, X, lambda a: a.compute())
        out = {name: best_of(fn, repeat) for name, fn in ops.items()}
        del x, X
    return out


def bench_dask(s: dict, repeat: int) -> dict[str, float]:
    import dask
    import dask.array as dda
    from distributed import Client, LocalCluster, wait
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        rs = dda.random.RandomState(0)
        x = rs.random_sample((s["square"],) * 2, chunks=s["square_chunk"]).persist()
        X = dda.random.RandomState(1).random_sample(
            (s["rows"], s["cols"]), chunks=(s["row_chunk"], s["cols"])).persist()
        wait([x, X])
        ops = operations(x, X, lambda a: dask.compute(a)[0])
        out = {name: best_of(fn, repeat) for name, fn in ops.items()}
        del x, X, client
    return out


def bench_numpy(s: dict, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.random((s["square"],) * 2)
    X = rng.random((s["rows"], s["cols"]))
    ops = operations(x, X, lambda a: a)
    out = {name: best_of(fn, repeat) for name, fn in ops.items()}
    del x, X
    gc.collect()
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| operation | distml (s) | dask (s) | numpy (s) | distml / dask | distml / numpy |",
             "|---|---:|---:|---:|---:|---:|"]
    for op in OPS:
        d, k, n = (results[s].get(op, float("nan")) for s in ("distml", "dask", "numpy"))
        lines.append(f"| `{op}` | {d:.3f} | {k:.3f} | {n:.3f} | {d / k:.2f} | {d / n:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per operation")
    args = parser.parse_args()
    s = sizes(args.quick)
    results = {}
    for name, fn in [("distml", bench_distml), ("dask", bench_dask), ("numpy", bench_numpy)]:
        print(f"running {name} ...", flush=True)
        results[name] = fn(s, args.repeat)
        gc.collect()
    md = (f"sizes: {s}, best of {args.repeat}; 2 workers x 1 thread for distml and dask\n\n"
          + table(results) + "\n")
    print(md)
    RESULTS.mkdir(exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"bench_array{suffix}.json").write_text(
        json.dumps({"sizes": s, "repeat": args.repeat, "seconds": results}, indent=2))
    (RESULTS / f"bench_array{suffix}.md").write_text(md)


if __name__ == "__main__":
    main()
