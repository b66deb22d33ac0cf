"""distml.estimators linear models vs scikit-learn: numpy and chunked input, with and without
a cluster; scikit-learn's estimator checks; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.linear_model as skl
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import distml.array as da
from distml.estimators._data import row_blocks
from distml.estimators.linear_model._glm import LinearRegression, LogisticRegression, Ridge

ROWS = (150, 400, 37, 613)  # uneven row chunks, 1200 rows


@pytest.fixture(scope="module")
def where(backend):
    """No client (threads in this process), then a real 2-worker cluster (conftest)."""
    return backend


def chunked(a: np.ndarray) -> da.Array:
    return da.from_array(a, chunks=(ROWS, *a.shape[1:]) if a.ndim == 1
                         else (ROWS, (3, a.shape[1] - 3)))


def rel_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def classification(n_classes: int):
    return make_classification(n_samples=1200, n_features=8, n_informative=5,
                               n_classes=n_classes, random_state=n_classes)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "chunked"])
def test_logistic_matches_sklearn(where, kind, n_classes):
    X, y = classification(n_classes)
    ref = skl.LogisticRegression(C=0.5).fit(X, y)
    Xi, yi = (X, y) if kind == "numpy" else (chunked(X), chunked(y))
    est = LogisticRegression(C=0.5).fit(Xi, yi)
    assert rel_diff(est.coef_, ref.coef_) <= 1e-3
    assert rel_diff(est.intercept_, ref.intercept_) <= 1e-3
    assert est.coef_.shape == ref.coef_.shape and est.intercept_.shape == ref.intercept_.shape
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    assert est.n_iter_.shape == (1,) and est.n_features_in_ == 8
    proba = est.predict_proba(Xi)
    pred = est.predict(Xi)
    if kind == "chunked":
        assert isinstance(proba, da.Array) and isinstance(pred, da.Array)
        assert proba.chunks[0] == ROWS
        proba, pred = proba.compute(), pred.compute()
        log_proba = est.predict_log_proba(Xi).compute()
        decision = est.decision_function(Xi).compute()
    else:
        assert isinstance(proba, np.ndarray)
        log_proba, decision = est.predict_log_proba(Xi), est.decision_function(Xi)
    np.testing.assert_allclose(proba, ref.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(log_proba, ref.predict_log_proba(X), atol=1e-3)
    np.testing.assert_allclose(decision, ref.decision_function(X), atol=1e-3)
    assert np.mean(pred == ref.predict(X)) > 0.99
    assert est.score(Xi, yi) == pytest.approx(ref.score(X, y), abs=0.01)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_weights_and_options(where, n_classes):
    X, y = classification(n_classes)
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    for params in ({"class_weight": "balanced", "C": 2.0},
                   {"class_weight": {1: 3.0}, "fit_intercept": False},
                   {"penalty": None}):
        ref = skl.LogisticRegression(**({"C": np.inf} if "penalty" in params else params),
                                     max_iter=500)
        ref.fit(X, y, sample_weight=w)
        est = LogisticRegression(**params, max_iter=500).fit(chunked(X), chunked(y),
                                                            sample_weight=chunked(w))
        assert rel_diff(est.coef_, ref.coef_) <= 1e-3, params
        if params.get("fit_intercept", True):
            assert rel_diff(est.intercept_, ref.intercept_) <= 1e-3, params
        else:
            assert not np.any(est.intercept_)


def test_logistic_string_labels():
    X, y = classification(3)
    labels = np.array(["ant", "bee", "cat"])[y]
    est = LogisticRegression().fit(chunked(X), chunked(labels))
    ref = skl.LogisticRegression().fit(X, labels)
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    assert np.mean(est.predict(chunked(X)).compute() == ref.predict(X)) > 0.99


@pytest.mark.parametrize("model", ["linear", "ridge"])
@pytest.mark.parametrize("kind", ["numpy", "chunked"])
def test_least_squares_match_sklearn(where, kind, model):
    X, y = make_regression(n_samples=1200, n_features=8, noise=5.0, bias=3.0, random_state=0)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    ours, ref = ((LinearRegression(), skl.LinearRegression()) if model == "linear"
                 else (Ridge(alpha=3.0), skl.Ridge(alpha=3.0)))
    ref.fit(X, y, sample_weight=w)
    Xi, yi, wi = (X, y, w) if kind == "numpy" else (chunked(X), chunked(y), chunked(w))
    ours.fit(Xi, yi, sample_weight=wi)
    assert rel_diff(ours.coef_, ref.coef_) <= 1e-6
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-6)
    pred = ours.predict(Xi)
    if kind == "chunked":
        assert isinstance(pred, da.Array) and pred.chunks == (ROWS,)
        pred = pred.compute()
    np.testing.assert_allclose(pred, ref.predict(X), rtol=1e-6, atol=1e-6)
    assert ours.score(Xi, yi) == pytest.approx(ref.score(X, y), rel=1e-9)


def test_ridge_multi_output_and_no_intercept():
    X, Y = make_regression(n_samples=1200, n_features=6, n_targets=2, random_state=3)
    ours = Ridge(alpha=0.5, fit_intercept=False).fit(chunked(X), da.from_array(Y, chunks=(100, 2)))
    ref = skl.Ridge(alpha=0.5, fit_intercept=False).fit(X, Y)
    assert ours.coef_.shape == (2, 6)
    assert rel_diff(ours.coef_, ref.coef_) <= 1e-9
    assert ours.predict(chunked(X)).compute().shape == (1200, 2)


def _sums(x, y):
    return np.array([x.sum(), y.sum()])


def test_row_blocks_align_and_keep_data_on_workers(where):
    X = np.arange(40.0).reshape(20, 2)
    blocks = row_blocks(da.from_array(X, chunks=((5, 15), 1)), np.arange(20.0))
    assert blocks.client is where and blocks.lengths == [5, 15]
    kind = "Future" if where is not None else "ndarray"
    assert all(type(p[0]).__name__ == kind and p[0] is not p[1] for p in blocks.parts)
    assert blocks.reduce(_sums).tolist() == [780.0, 190.0]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("Est", [LogisticRegression, LinearRegression, Ridge])
@pytest.mark.parametrize("kind", ["numpy", "chunked"])
def test_bad_input(Est, kind):
    X, y = classification(2)
    wrap = (lambda a: a) if kind == "numpy" else chunked
    with pytest.raises(NotFittedError):
        Est().predict(wrap(X))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Est().fit(wrap(X), y[:-1] if kind == "numpy" else da.from_array(y[:-1], chunks=300))
    bad = X.copy()
    bad[700, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        Est().fit(wrap(bad), wrap(y))
    est = Est().fit(wrap(X), wrap(y))
    with pytest.raises(ValueError, match="X has 7 features, but .* is expecting 8 features"):
        est.predict(wrap(X[:, :7]) if kind == "numpy" else da.from_array(X[:, :7], chunks=300))
    with pytest.raises(ValueError, match="at least one non-zero"):
        Est().fit(wrap(X), wrap(y), sample_weight=wrap(np.zeros(len(y))))


def test_one_class_and_bad_params():
    X, y = classification(2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogisticRegression().fit(chunked(X), chunked(np.zeros(len(y))))
    with pytest.raises(ValueError, match="penalty"):
        LogisticRegression(penalty="l1").fit(X, y)
    with pytest.raises(ValueError, match="alpha"):
        Ridge(alpha=-1.0).fit(X, y)


@parametrize_with_checks([LogisticRegression(), LinearRegression(), Ridge()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
