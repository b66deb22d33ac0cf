"""Incremental and ParallelPostFit (distml.estimators.wrappers), in this process and on a
real two-worker cluster."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.linear_model import SGDClassifier as SkSGDClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import distml.array as da
from distml import wait
from distml.estimators.wrappers import Incremental, ParallelPostFit

ROWS = (3000, 1000, 2500, 1500, 2000, 3500, 1000, 1500)  # 16,000 rows, uneven


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=sum(ROWS) + 4000, n_features=10, random_state=0)
    n = sum(ROWS)
    return X[:n], y[:n], X[n:], y[n:]


def _chunked(X: np.ndarray, y: np.ndarray) -> tuple[da.Array, da.Array]:
    return da.from_array(X, chunks=(ROWS, (X.shape[1],))), da.from_array(y, chunks=(ROWS,))


def _blocks(a: np.ndarray) -> list[np.ndarray]:
    return np.split(a, np.cumsum(ROWS)[:-1])


def test_incremental_equals_local_loop(backend, data):
    X, y, _, _ = data
    base = SkSGDClassifier(random_state=0, tol=None)
    wrapped = Incremental(base, shuffle_blocks=False, n_epochs=2).fit(*_chunked(X, y))
    expected = clone(base)
    for _ in range(2):
        for Xb, yb in zip(_blocks(X), _blocks(y)):
            expected.partial_fit(Xb, yb, classes=np.array([0, 1]))
    np.testing.assert_array_equal(wrapped.estimator_.coef_, expected.coef_)
    np.testing.assert_array_equal(wrapped.estimator_.intercept_, expected.intercept_)
    assert wrapped.estimator is base and not hasattr(base, "coef_")


def test_incremental_shuffled_order_is_seeded(backend, data):
    X, y, X_test, y_test = data
    Xd, yd = _chunked(X, y)
    base = SkSGDClassifier(random_state=0, tol=None)
    first = Incremental(base, random_state=5, n_epochs=2).fit(Xd, yd)
    second = Incremental(base, random_state=5, n_epochs=2).fit(Xd, yd)
    np.testing.assert_array_equal(first.estimator_.coef_, second.estimator_.coef_)
    order = np.random.RandomState(5)
    expected = clone(base)
    blocks = list(zip(_blocks(X), _blocks(y)))
    for _ in range(2):
        for b in order.permutation(len(ROWS)):
            expected.partial_fit(*blocks[b], classes=np.array([0, 1]))
    np.testing.assert_array_equal(first.estimator_.coef_, expected.coef_)
    assert first.score(X_test, y_test) > 0.75


def test_incremental_forwards_classes_and_weights(backend, data):
    X, y, _, _ = data
    Xd, yd = _chunked(X, y)
    weights = np.where(y == 1, 3.0, 1.0)
    model = Incremental(SkSGDClassifier(random_state=0, tol=None), shuffle_blocks=False)
    model.fit(Xd, yd, classes=[0, 1, 2], sample_weight=da.from_array(weights, chunks=(ROWS,)))
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    expected = SkSGDClassifier(random_state=0, tol=None)
    for Xb, yb, wb in zip(_blocks(X), _blocks(y), _blocks(weights)):
        expected.partial_fit(Xb, yb, classes=[0, 1, 2], sample_weight=wb)
    np.testing.assert_array_equal(model.estimator_.coef_, expected.coef_)
    before = model.estimator_.coef_.copy()
    model.partial_fit(Xd, yd)  # continues from estimator_: classes are kept
    assert not np.array_equal(before, model.estimator_.coef_)


def test_incremental_unsupervised(backend, data):
    X, _, _, _ = data
    model = Incremental(IncrementalPCA(n_components=3), shuffle_blocks=False)
    model.fit(da.from_array(X, chunks=(ROWS, (10,))))
    expected = IncrementalPCA(n_components=3)
    for Xb in _blocks(X):
        expected.partial_fit(Xb)
    np.testing.assert_allclose(model.estimator_.components_, expected.components_)
    out = model.transform(da.from_array(X, chunks=(4000, 10)))
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), expected.transform(X))


def test_parallel_post_fit_matches_estimator(backend, data):
    X, y, X_test, y_test = data
    Xt = da.from_array(X_test, chunks=(1500, 10))
    yt = da.from_array(y_test, chunks=(1500,))
    model = ParallelPostFit(LogisticRegression()).fit(X, y)
    reference = LogisticRegression().fit(X, y)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        out = getattr(model, method)(Xt)
        assert isinstance(out, da.Array) and out.chunks[0] == Xt.chunks[0]
        np.testing.assert_array_equal(out.compute(), getattr(reference, method)(X_test))
        local = getattr(model, method)(X_test)
        assert isinstance(local, np.ndarray)
        np.testing.assert_array_equal(local, getattr(reference, method)(X_test))
    assert model.score(Xt, yt) == pytest.approx(reference.score(X_test, y_test))
    assert model.score(X_test, y_test) == reference.score(X_test, y_test)
    regressor = ParallelPostFit(LinearRegression()).fit(X, X[:, 0] + y)
    expected = LinearRegression().fit(X, X[:, 0] + y)
    assert regressor.score(Xt, Xt[:, 0] + yt) == pytest.approx(
        expected.score(X_test, X_test[:, 0] + y_test))
    chunked_fit = ParallelPostFit(PCA(n_components=2)).fit(*_chunked(X, y))
    np.testing.assert_allclose(chunked_fit.transform(Xt).compute(),
                               PCA(n_components=2).fit(X).transform(X_test))


def test_params_are_delegated():
    model = Incremental(SkSGDClassifier(alpha=0.5), n_epochs=3)
    params = model.get_params()
    assert params["estimator__alpha"] == 0.5 and params["n_epochs"] == 3
    model.set_params(estimator__alpha=0.1, shuffle_blocks=False)
    assert model.estimator.alpha == 0.1 and model.shuffle_blocks is False
    post = ParallelPostFit(StandardScaler(with_mean=False))
    assert post.get_params()["estimator__with_mean"] is False
    assert clone(post).get_params()["estimator__with_mean"] is False


def test_bad_input(backend, data):
    X, y, _, _ = data
    with pytest.raises(NotFittedError):
        ParallelPostFit(LogisticRegression()).predict(X)
    with pytest.raises(NotFittedError):
        Incremental(SkSGDClassifier()).predict(da.from_array(X, chunks=(4000, 10)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Incremental(SkSGDClassifier()).fit(da.from_array(X, chunks=(4000, 10)), y[:-3])
    with pytest.raises(ValueError, match="classes should include all valid labels"):
        Incremental(SkSGDClassifier()).fit(*_chunked(X, y), classes=[0])  # y has label 1
    bad = X.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        Incremental(SkSGDClassifier()).fit(*_chunked(bad, y), classes=[0, 1])
    with pytest.raises(ValueError, match="n_epochs"):
        Incremental(SkSGDClassifier(), n_epochs=0).fit(X, y)
    with pytest.raises(AttributeError):
        ParallelPostFit(LinearRegression()).predict_proba


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, Incremental) and isinstance(estimator.estimator, IncrementalPCA):
        return {"check_estimator_sparse_tag":
                "the wrapper reports the wrapped estimator's tags; IncrementalPCA accepts "
                "sparse input in fit but not in partial_fit, which Incremental calls"}
    return {}


@parametrize_with_checks([Incremental(SkSGDClassifier(random_state=0)),
                          Incremental(IncrementalPCA(n_components=1)),
                          ParallelPostFit(LogisticRegression()),
                          ParallelPostFit(StandardScaler())],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


class _WhereTrained(SkSGDClassifier):
    """Records the process of every partial_fit call (to see where the model travelled)."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        import os
        self.pids_ = [*getattr(self, "pids_", []), os.getpid()]
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)


def test_incremental_model_goes_to_the_data(backend, data):
    if backend is None:
        pytest.skip("needs the cluster")
    X, y, _, _ = data
    Xd, yd = backend.persist(list(_chunked(X, y)))
    blocks = [Xd.dask[(Xd.name, i, 0)] for i in range(len(ROWS))]
    wait(blocks)
    pids = backend.run(__import__("os").getpid)
    holders = [pids[backend.who_has([f])[f.key][0]] for f in blocks]
    # classes given: no reduction over the blocks first, whose small tasks a worker that runs
    # out of work may steal, leaving copies of blocks that make either worker a holder
    model = Incremental(_WhereTrained(random_state=0), shuffle_blocks=False).fit(
        Xd, yd, classes=np.unique(y))
    assert model.estimator_.pids_ == holders
    assert len(set(holders)) == 2
