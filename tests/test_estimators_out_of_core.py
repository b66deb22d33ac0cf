"""Training data larger than the workers' combined memory limit: generated block by block on
the workers, kept through spilling to disk, and trained to the same coefficients as on a
cluster with ample memory."""

from __future__ import annotations

import numpy as np

import distml.array as da
from distml import Client, LocalCluster, wait
from distml.estimators._data import aligned
from distml.estimators.linear_model._sgd import SGDClassifier

N_FEATURES = 25
BLOCK_ROWS = 50_000  # 10 MB blocks
N_BLOCKS = 85  # 850 MB of X in float64
SMALL_LIMIT = 2**20 * 400  # per worker: 800 MiB (839 MB) for the two
# Workers read their memory thresholds from the environment.  A worker with scikit-learn
# loaded is ~190 MB resident before it holds any data, and reading spilled blocks back
# costs another ~150 MB at peak: keep only 5% of the limit as data in memory, and pause or
# restart a worker only close to its limit.
SPILL_EARLY = {"DISTML_MEMORY_TARGET_FRACTION": "0.05", "DISTML_MEMORY_PAUSE_FRACTION": "0.95",
               "DISTML_MEMORY_TERMINATE_FRACTION": "0.99"}


def _labels(X: np.ndarray) -> np.ndarray:
    X = aligned(X)
    return (X @ np.linspace(-1.0, 1.0, X.shape[1]) > 0.0).astype(np.int64)


def _fit(memory_limit: int) -> tuple[SGDClassifier, dict]:
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=memory_limit) as cluster, \
            Client(cluster) as client:
        X = da.random.random(size=(BLOCK_ROWS * N_BLOCKS, N_FEATURES),
                             chunks=((BLOCK_ROWS,) * N_BLOCKS, (N_FEATURES,)), seed=4)
        y = X.map_blocks(_labels, dtype=np.int64, drop_axis=1)
        X, y = client.persist([X, y])  # all of it is made, and held, before training starts
        wait([f for a in (X, y) for f in a.dask.values()])
        model = SGDClassifier(alpha=1e-3, n_epochs=1, tol=None, random_state=0)
        model.fit(X, y, classes=[0, 1])
        workers = client.scheduler_info()["workers"]
        assert [s.restarts for s in cluster.supervisors] == [0, 0]
        return model, workers


def test_sgd_on_data_larger_than_the_cluster_memory_matches_ample_memory(monkeypatch):
    data_bytes = BLOCK_ROWS * N_BLOCKS * N_FEATURES * 8
    assert data_bytes > 2 * SMALL_LIMIT
    ample, ample_workers = _fit(2 * data_bytes)
    for name, value in SPILL_EARLY.items():
        monkeypatch.setenv(name, value)
    small, workers = _fit(SMALL_LIMIT)
    assert sum(w["memory_limit"] for w in workers.values()) < data_bytes
    assert sum(w["spilled"] for w in workers.values()) > 0
    assert sum(w["spilled"] for w in ample_workers.values()) == 0
    np.testing.assert_array_equal(small.coef_, ample.coef_)
    np.testing.assert_array_equal(small.intercept_, ample.intercept_)
    assert small.score(np.eye(N_FEATURES), (np.linspace(-1, 1, N_FEATURES) > 0).astype(int)) > 0.8
