"""Searches over chunked input: folds follow block boundaries, candidates are fitted with the
distributed estimators, and the results equal fitting those estimators fold by fold by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

import distml.array as da
from distml.estimators.linear_model import LogisticRegression
from distml.estimators.model_selection import GridSearchCV, block_folds
from distml.estimators.model_selection._split import select_blocks
from distml.estimators.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=1200, n_features=8, random_state=0)
    return X, y


def test_block_folds_cover_every_block_once():
    folds = block_folds(7, 3)
    assert [te for _, te in folds] == [[0, 1, 2], [3, 4], [5, 6]]
    for train, test in folds:
        assert sorted(train + test) == list(range(7))
    shuffled = block_folds(7, 3, shuffle=True, random_state=0)
    assert sorted(b for _, te in shuffled for b in te) == list(range(7))
    assert shuffled == block_folds(7, 3, shuffle=True, random_state=0)
    with pytest.raises(ValueError, match="greater than the number of row blocks"):
        block_folds(2, 3)


def test_select_blocks_keeps_blocks(client, data):
    X, _ = data
    arr = da.from_array(X, chunks=(150, 8))
    picked = select_blocks(arr, [1, 3])
    np.testing.assert_array_equal(picked.compute(), np.vstack([X[150:300], X[450:600]]))


def _by_hand(X, y, folds, C):
    scores = []
    for train, test in folds:
        Xa, ya = da.from_array(X, chunks=(150, 8)), da.from_array(y, chunks=150)
        model = LogisticRegression(C=C).fit(select_blocks(Xa, train), select_blocks(ya, train))
        scores.append(model.score(select_blocks(Xa, test), select_blocks(ya, test)))
    return scores


def test_chunked_grid_search_equals_fold_by_fold_fits(client, data):
    X, y = data
    Xa, ya = da.from_array(X, chunks=(150, 8)), da.from_array(y, chunks=150)
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, cv=4,
                          return_train_score=True, progress=False).fit(Xa, ya)
    folds = block_folds(8, 4)
    for i, C in enumerate([0.01, 1.0]):
        expected = _by_hand(X, y, folds, C)
        got = [search.cv_results_[f"split{s}_test_score"][i] for s in range(4)]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert search.cv_results_["params"] == [{"C": 0.01}, {"C": 1.0}]
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]
    assert list(search.cv_results_["rank_test_score"]) in ([1, 2], [2, 1], [1, 1])
    assert isinstance(search.best_estimator_, LogisticRegression)
    assert search.best_estimator_.score(Xa, ya) > 0.8
    assert "mean_train_score" in search.cv_results_


def test_chunked_pipeline_prefix_fitted_once_per_fold(client, data):
    X, y = data
    Xa, ya = da.from_array(X, chunks=(200, 8)), da.from_array(y, chunks=200)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"clf__C": [0.1, 1.0, 10.0]}, cv=KFold(3),
                          scoring=["accuracy", "neg_log_loss"], refit="accuracy",
                          progress=False).fit(Xa, ya)
    assert search.n_prefix_fits_ == 3  # the scaler once per fold, not once per candidate
    assert search.multimetric_
    assert {"mean_test_accuracy", "rank_test_neg_log_loss"} <= set(search.cv_results_)
    assert np.all(search.cv_results_["mean_test_accuracy"] > 0.8)


def test_chunked_input_rejects_splitters_that_cut_blocks(client, data):
    X, y = data
    Xa, ya = da.from_array(X, chunks=(150, 8)), da.from_array(y, chunks=150)
    with pytest.raises(ValueError, match="folds follow block boundaries"):
        GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=StratifiedKFold(3),
                     progress=False).fit(Xa, ya)
    with pytest.raises(ValueError, match="no chunked implementation"):
        GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=3, scoring="roc_auc",
                     progress=False).fit(Xa, ya)
