"""The main job: a least-squares model trained on chunked data on the embedded local cluster.

Each worker generates its own chunks of a seeded regression problem (nothing is shipped from the
client), computes the chunk's normal-equation terms ``X.T @ X`` and ``X.T @ y``, and a tree
reduction sums them; the client solves the small system. Prints what ran and how long it took.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distml import Client


def make_chunk(seed: int, rows: int, true_coef: np.ndarray, noise: float) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, true_coef.size))
    y = x @ true_coef + noise * rng.standard_normal(rows)
    return x, y


def normal_terms(chunk: tuple) -> tuple:
    x, y = chunk
    return x.T @ x, x.T @ y, len(y)


def add_terms(a: tuple, b: tuple) -> tuple:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def tree_sum(client: Client, futures: list) -> object:
    """Pairwise reduction on the workers, so no single task sees more than two inputs."""
    while len(futures) > 1:
        paired = [client.submit(add_terms, futures[i], futures[i + 1])
                  for i in range(0, len(futures) - 1, 2)]
        if len(futures) % 2:
            paired.append(futures[-1])
        futures = paired
    return futures[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per chunk")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    true_coef = rng.standard_normal(args.features)
    started = time.perf_counter()
    with Client(n_workers=args.workers) as client:
        ready = time.perf_counter()
        workers = client.nthreads()
        print(f"local cluster: {len(workers)} workers, {sum(workers.values())} threads, "
              f"ready in {ready - started:.2f} s")
        chunks = client.map(make_chunk, range(args.chunks), rows=args.rows, true_coef=true_coef,
                            noise=0.1)
        terms = client.map(normal_terms, chunks)
        total = tree_sum(client, terms)
        xtx, xty, n = total.result()
        coef = np.linalg.solve(xtx, xty)
        fit_seconds = time.perf_counter() - ready
        held = client.who_has(chunks)
        per_worker: dict[str, int] = {}
        for holders in held.values():
            for address in holders:
                per_worker[address] = per_worker.get(address, 0) + 1
    error = float(np.max(np.abs(coef - true_coef)))
    gb = args.chunks * args.rows * (args.features + 1) * 8 / 1e9
    print(f"trained least squares on {n:,} rows x {args.features} features "
          f"({gb:.2f} GB in {args.chunks} chunks) in {fit_seconds:.2f} s")
    print(f"chunks held per worker: {sorted(per_worker.values())}")
    print(f"max |coef - true coef| = {error:.2e}")
    print(f"total wall time {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
