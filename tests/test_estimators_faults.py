"""Estimators on a real cluster that loses a worker (SIGKILL) in the middle of ``fit``: the
coefficients must equal, bit for bit, those of an undisturbed fit with the same random_state
and chunking.  The data is generated block by block on the workers, so the blocks a dead
worker held are recomputed from their lineage."""

from __future__ import annotations

import logging
import signal
from contextlib import contextmanager

import numpy as np

import distml.array as da
from distml import LocalCluster
from distml.estimators._data import aligned
from distml.estimators.linear_model._glm import LogisticRegression
from distml.estimators.linear_model._sgd import SGDClassifier

N_FEATURES = 20
ROWS = (40_000,) * 6


def _labels(X: np.ndarray) -> np.ndarray:
    X = aligned(X)  # the same labels whether or not X was moved (see aligned)
    weights = np.linspace(-1.0, 1.0, X.shape[1])
    return (X @ weights + 0.5 * X[:, 0] ** 2 > 0.5).astype(np.int64)


def _data(seed: int) -> tuple[da.Array, da.Array]:
    X = da.random.normal(size=(sum(ROWS), N_FEATURES), chunks=(ROWS, (N_FEATURES,)), seed=seed)
    return X, X.map_blocks(_labels, dtype=np.int64, drop_axis=1)


class _KillOnRecords(logging.Handler):
    """SIGKILLs the first worker when log records containing each of ``triggers`` have
    arrived, in that order (the handler runs in the thread that logs, so the kill happens at
    that exact point of ``fit``)."""

    def __init__(self, cluster: LocalCluster, triggers: tuple[str, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.cluster, self.pending = cluster, list(triggers)
        self.killed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending and self.pending[0] in record.getMessage():
            self.pending.pop(0)
            if not self.pending:
                self.cluster.supervisors[0].kill(signal.SIGKILL)
                self.killed = True


@contextmanager
def _kill_a_worker(cluster: LocalCluster, logger_name: str, *triggers: str):
    logger = logging.getLogger(logger_name)
    handler = _KillOnRecords(cluster, triggers)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    restarts = cluster.supervisors[0].restarts
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.killed, f"no worker was killed: no log records {handler.pending}"
    cluster.wait_for_workers(2)
    assert cluster.supervisors[0].restarts == restarts + 1


def test_sgd_killed_worker_mid_epoch_gives_the_same_coefficients(cluster, client):
    X, y = _data(seed=11)
    params = dict(alpha=1e-3, n_epochs=4, tol=None, random_state=5)
    undisturbed = SGDClassifier(**params).fit(X, y)
    # killed right after epoch 2's training tasks are submitted, while they are in flight
    with _kill_a_worker(cluster, "distml.estimators.linear_model._sgd", "epoch 1/4",
                        "training"):
        disturbed = SGDClassifier(**params).fit(X, y)
    assert disturbed.n_iter_ == 4
    np.testing.assert_array_equal(disturbed.coef_, undisturbed.coef_)
    np.testing.assert_array_equal(disturbed.intercept_, undisturbed.intercept_)
    assert disturbed.t_ == undisturbed.t_


def test_logistic_regression_killed_worker_mid_fit_gives_the_same_coefficients(cluster, client):
    X, y = _data(seed=12)
    undisturbed = LogisticRegression(C=0.1).fit(X, y)
    # killed between two L-BFGS iterations: the next loss/gradient needs recomputed blocks
    with _kill_a_worker(cluster, "distml.estimators.linear_model._glm", "iteration 2:"):
        disturbed = LogisticRegression(C=0.1).fit(X, y)
    np.testing.assert_array_equal(disturbed.n_iter_, undisturbed.n_iter_)
    np.testing.assert_array_equal(disturbed.coef_, undisturbed.coef_)
    np.testing.assert_array_equal(disturbed.intercept_, undisturbed.intercept_)
