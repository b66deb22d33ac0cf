"""The main job: train classifiers on chunked data on the embedded local cluster.

The data is made on the workers (a seeded chunked array: nothing is shipped from the client),
labelled by a hidden linear rule with noise, split per block into train and test, scaled, and used
to train a partitioned-SGD classifier and an L-BFGS logistic regression. Prints what ran, how long
each step took and the held-out accuracy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import distml.array as da
from distml import Client
from distml.estimators.linear_model import LogisticRegression, SGDClassifier
from distml.estimators.metrics import accuracy_score
from distml.estimators.model_selection import train_test_split
from distml.estimators.preprocessing import StandardScaler


def label(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Labels from a hidden linear rule on all columns but the last, which is the noise that
    keeps the task from being trivial."""
    return (block[:, :-1] @ weights + block[:, -1] > 0).astype("int64")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    hidden = np.random.default_rng(0).normal(size=args.features)
    started = time.perf_counter()
    with Client(n_workers=args.workers) as client:
        threads = client.nthreads()
        print(f"local cluster: {len(threads)} workers, {sum(threads.values())} threads, "
              f"ready in {time.perf_counter() - started:.2f} s")

        t = time.perf_counter()
        columns = args.features + 1
        data = da.random.normal(size=(args.rows, columns), chunks=(args.chunk_rows, columns),
                                seed=1)
        X, y = data[:, :-1], data.map_blocks(label, hidden, dtype="int64", drop_axis=1)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
        X_train, X_test, y_train, y_test = client.persist([X_train, X_test, y_train, y_test])
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = client.persist([scaler.transform(X_train), scaler.transform(X_test)])
        print(f"made {args.rows:,} x {args.features} rows on the workers "
              f"({X.nbytes / 1e9:.2f} GB in {X.npartitions} chunks), split and scaled in "
              f"{time.perf_counter() - t:.2f} s")

        for model in (SGDClassifier(loss="log_loss", n_epochs=5, random_state=0),
                      LogisticRegression(C=1.0)):
            t = time.perf_counter()
            model.fit(X_train, y_train, **({"classes": [0, 1]} if isinstance(
                model, SGDClassifier) else {}))
            seconds = time.perf_counter() - t
            accuracy = accuracy_score(y_test, model.predict(X_test))
            print(f"{type(model).__name__:>18}: trained in {seconds:.2f} s, "
                  f"held-out accuracy {accuracy:.4f}")
    print(f"total wall time {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
