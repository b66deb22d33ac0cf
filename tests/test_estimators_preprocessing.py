"""distml.estimators scalers, metrics and train_test_split vs scikit-learn, on numpy and chunked
input, in this process and on a real 2-worker cluster."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
import sklearn.preprocessing as skp
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import distml.array as da
from distml.estimators import metrics
from distml.estimators.model_selection import train_test_split
from distml.estimators.preprocessing import MinMaxScaler, StandardScaler

ROWS = (120, 380, 7, 493)  # uneven row chunks, 1000 rows
RNG = np.random.default_rng(0)
X = RNG.normal(3.0, 2.0, (1000, 5))
X[:, 2] = 7.0  # a constant feature
W = RNG.uniform(0.5, 2.0, 1000)


@pytest.fixture(scope="module")
def where(backend):
    """No client (threads in this process), then a real 2-worker cluster (conftest)."""
    return backend


def chunked(a: np.ndarray) -> da.Array:
    return da.from_array(a, chunks=(ROWS, *a.shape[1:]) if a.ndim == 1
                         else (ROWS, (2, a.shape[1] - 2)))


def value(a):
    return a.compute() if isinstance(a, da.Array) else a


def assert_attrs(ours, ref, names):
    for name in names:
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("params", [{}, {"with_mean": False}, {"with_std": False}])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["numpy", "chunked"])
def test_standard_scaler(where, kind, params, weighted):
    data = X.copy()
    data[5, 1] = np.nan
    w = W if weighted else None
    ref = skp.StandardScaler(**params).fit(data, sample_weight=w)
    Xi, wi = (data, w) if kind == "numpy" else (chunked(data), None if w is None else chunked(w))
    ours = StandardScaler(**params).fit(Xi, sample_weight=wi)
    assert_attrs(ours, ref, ["mean_", "var_", "scale_", "n_samples_seen_"])
    out = ours.transform(Xi)
    assert isinstance(out, da.Array if kind == "chunked" else np.ndarray)
    np.testing.assert_allclose(value(out), ref.transform(data), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(value(ours.inverse_transform(out)), data, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("params", [{}, {"feature_range": (-2, 3)},
                                    {"feature_range": (0, 2), "clip": True}])
@pytest.mark.parametrize("kind", ["numpy", "chunked"])
def test_min_max_scaler(where, kind, params):
    data = X.copy()
    data[7, 0] = np.nan
    ref = skp.MinMaxScaler(**params).fit(data)
    Xi = data if kind == "numpy" else chunked(data)
    ours = MinMaxScaler(**params).fit(Xi)
    assert_attrs(ours, ref, ["data_min_", "data_max_", "data_range_", "scale_", "min_",
                             "n_samples_seen_"])
    new = X * 1.5  # values outside the fitted range, to exercise clip
    out = ours.transform(new if kind == "numpy" else chunked(new))
    np.testing.assert_allclose(value(out), ref.transform(new), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(value(ours.inverse_transform(ours.transform(Xi))), data,
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("Est", [StandardScaler, MinMaxScaler])
def test_scaler_bad_input(Est):
    with pytest.raises(NotFittedError):
        Est().transform(chunked(X))
    est = Est().fit(chunked(X))
    with pytest.raises(ValueError, match="X has 4 features, but .* is expecting 5 features"):
        est.transform(da.from_array(X[:, :4], chunks=200))
    bad = X.copy()
    bad[600, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        Est().fit(chunked(bad))
    with pytest.raises(ValueError, match="Expected 2D array"):
        Est().fit(da.from_array(X[:, 0], chunks=200))


# ---------------------------------------------------------------------- metrics
def test_classification_metrics(where):
    y = RNG.integers(0, 3, 1000)
    pred = np.where(RNG.random(1000) < 0.7, y, RNG.integers(0, 3, 1000))
    proba = RNG.dirichlet([1.0, 1.0, 1.0], 1000)
    for w in (None, W):
        wi = None if w is None else chunked(w)
        assert metrics.accuracy_score(chunked(y), chunked(pred), sample_weight=wi) == \
            pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), rel=1e-12)
        assert metrics.accuracy_score(chunked(y), pred, normalize=False, sample_weight=w) == \
            pytest.approx(skm.accuracy_score(y, pred, normalize=False, sample_weight=w))
        assert metrics.log_loss(chunked(y), chunked(proba), sample_weight=wi) == \
            pytest.approx(skm.log_loss(y, proba, sample_weight=w), rel=1e-12)
    binary = (y > 0).astype(int)
    p1 = RNG.random(1000)
    assert metrics.log_loss(chunked(binary), chunked(p1)) == \
        pytest.approx(skm.log_loss(binary, p1), rel=1e-12)
    assert metrics.accuracy_score(y, pred) == skm.accuracy_score(y, pred)


def test_regression_metrics(where):
    y = RNG.normal(size=(1000, 2))
    pred = y + RNG.normal(size=(1000, 2)) * 0.4
    yi, pi = chunked(y), da.from_array(pred, chunks=(250, 1))
    for w in (None, W):
        wi = None if w is None else chunked(w)
        for mo in ("raw_values", "uniform_average", "variance_weighted"):
            np.testing.assert_allclose(
                metrics.r2_score(yi, pi, sample_weight=wi, multioutput=mo),
                skm.r2_score(y, pred, sample_weight=w, multioutput=mo), rtol=1e-12)
        for mo in ("raw_values", "uniform_average"):
            np.testing.assert_allclose(
                metrics.mean_squared_error(yi, pi, sample_weight=wi, multioutput=mo),
                skm.mean_squared_error(y, pred, sample_weight=w, multioutput=mo), rtol=1e-12)
    assert metrics.r2_score(chunked(y[:, 0]), chunked(pred[:, 0])) == \
        pytest.approx(skm.r2_score(y[:, 0], pred[:, 0]), rel=1e-12)
    const = np.full(1000, 2.0)
    assert metrics.r2_score(chunked(const), chunked(const)) == 1.0
    assert metrics.r2_score(chunked(const), chunked(const + 1)) == 0.0
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metrics.mean_squared_error(chunked(y), y[:-1])


# ---------------------------------------------------------------------- train_test_split
def test_train_test_split_reproducible_and_disjoint(where):
    ids = np.arange(1000)
    Xi, yi = chunked(np.column_stack([ids, ids * 2.0])), chunked(ids)
    first = train_test_split(Xi, yi, test_size=0.2, random_state=7)
    again = train_test_split(Xi, ids, test_size=0.2, random_state=7)
    X_train, X_test, y_train, y_test = [a.compute() for a in first]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.compute(), b.compute())
    assert X_train.shape == (800, 2) and X_test.shape == (200, 2)
    assert first[1].chunks[0] == (24, 76, 1, 99) and sum(first[0].chunks[0]) == 800
    np.testing.assert_array_equal(X_train[:, 0], y_train)  # rows stay paired
    np.testing.assert_array_equal(X_test[:, 1], 2 * y_test)
    assert not set(y_train) & set(y_test)
    assert sorted([*y_train, *y_test]) == list(ids)
    other = train_test_split(yi, test_size=0.2, random_state=8)[1].compute()
    assert set(other) != set(y_test)


def test_train_test_split_sizes_and_no_shuffle():
    yi = chunked(np.arange(1000))
    train, test = train_test_split(yi, test_size=100, train_size=500, random_state=0)
    assert (len(train), len(test)) == (500, 100)
    train, test = train_test_split(yi, shuffle=False, test_size=0.5)
    assert np.all(np.diff(train.compute()) > 0)
    with pytest.raises(ValueError, match="should be either positive"):
        train_test_split(yi, test_size=1.5)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        train_test_split(yi, np.arange(999))
    a_train, a_test = train_test_split(np.arange(10), random_state=0)  # numpy: scikit-learn's
    assert isinstance(a_train, np.ndarray) and len(a_test) == 3


@parametrize_with_checks([StandardScaler(), MinMaxScaler()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
