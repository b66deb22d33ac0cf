"""Successive halving and Hyperband on a real cluster: models trained block by block side by
side, weak ones stopped early, and Hyperband at least as good as random search on the same
budget."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier

import distml.array as da
from distml.estimators.linear_model import SGDClassifier as PartitionedSGD
from distml.estimators.model_selection import HyperbandSearchCV, SuccessiveHalvingSearchCV

SPACE = {"alpha": loguniform(1e-6, 1e1), "loss": ["hinge", "log_loss", "modified_huber"],
         "penalty": ["l2", "l1"], "eta0": loguniform(1e-4, 1e0),
         "learning_rate": ["constant", "optimal", "invscaling"]}


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=4000, n_features=30, n_informative=6, flip_y=0.05,
                               class_sep=0.7, random_state=3)
    return X, y, np.unique(y)


def test_hyperband_at_least_as_good_as_random_search_on_same_budget(client, problem):
    X, y, classes = problem
    est = SGDClassifier(tol=None, random_state=0)
    hyperband = HyperbandSearchCV(est, SPACE, max_iter=27, random_state=2)
    hyperband.fit(X, y, classes=classes)
    budget = hyperband.metadata_["partial_fit_calls"]
    assert budget == hyperband.budget()
    # random search: as many models as the budget pays for, each trained to max_iter calls
    # (one rung of successive halving that stops nobody), on the same split and blocks
    n_random = budget // 27
    random = SuccessiveHalvingSearchCV(est, SPACE, n_initial_parameters=n_random,
                                       n_initial_iter=27, max_iter=27, random_state=2)
    random.fit(X, y, classes=classes)
    assert random.metadata_["partial_fit_calls"] == n_random * 27 <= budget
    assert hyperband.best_score_ >= random.best_score_
    assert hyperband.metadata_["n_models"] > 3 * n_random  # it tried many more settings
    assert hyperband.best_estimator_.score(X, y) > 0.7


def test_successive_halving_stops_weak_models(client, problem):
    X, y, classes = problem
    search = SuccessiveHalvingSearchCV(SGDClassifier(tol=None, random_state=0), SPACE,
                                       n_initial_parameters=9, n_initial_iter=2,
                                       aggressiveness=3, random_state=1)
    search.fit(X, y, classes=classes)
    calls = search.cv_results_["partial_fit_calls"]
    assert sorted(calls) == [2] * 6 + [6] * 2 + [18]  # 9 models, then 3, then 1
    history = search.history_
    assert len(history) == 9 + 3 + 1
    survivors = [h["model_id"] for h in history if h["partial_fit_calls"] == 6]
    first = {h["model_id"]: h["score"] for h in history if h["partial_fit_calls"] == 2}
    cut = sorted(first.values(), reverse=True)[2]
    assert all(first[m] >= cut for m in survivors)  # the best third went on
    assert search.best_score_ == max(h["score"] for h in history)
    assert search.cv_results_["rank_test_score"][search.best_index_] == 1
    assert set(search.model_history_) == set(range(9))
    assert isinstance(search.cv_results_["param_alpha"], np.ma.MaskedArray)
    assert search.predict(X[:5]).shape == (5,)


def test_same_results_without_client(client, problem):
    X, y, classes = problem
    kw = dict(n_initial_parameters=6, n_initial_iter=1, random_state=2)
    on_cluster = SuccessiveHalvingSearchCV(SGDClassifier(tol=None, random_state=0), SPACE,
                                           **kw).fit(X, y, classes=classes)
    from distml.client import client as client_module
    default, client_module._default_client = client_module._default_client, None
    try:
        local = SuccessiveHalvingSearchCV(SGDClassifier(tol=None, random_state=0), SPACE,
                                          **kw).fit(X, y, classes=classes)
    finally:
        client_module._default_client = default
    scores = lambda s: {(h["model_id"], h["partial_fit_calls"]): h["score"]  # noqa: E731
                        for h in s.history_}
    assert scores(local) == scores(on_cluster)
    assert local.best_params_ == on_cluster.best_params_


def test_chunked_input_with_partitioned_sgd(client, problem):
    X, y, classes = problem
    Xa, ya = da.from_array(X, chunks=(500, 30)), da.from_array(y, chunks=500)
    search = HyperbandSearchCV(PartitionedSGD(random_state=0),
                               {"alpha": loguniform(1e-5, 1e-1)}, max_iter=9,
                               random_state=0)
    search.fit(Xa, ya, classes=classes)
    assert search.best_score_ > 0.6
    assert search.metadata_["brackets"] == 3


def test_estimator_without_partial_fit_is_refused(client, problem):
    X, y, _ = problem
    with pytest.raises(ValueError, match="needs an estimator with partial_fit"):
        HyperbandSearchCV(LogisticRegression(), {"C": [1.0]}).fit(X, y)
    with pytest.raises(ValueError, match="aggressiveness must be an integer >= 2"):
        HyperbandSearchCV(SGDClassifier(), {"alpha": [1.0]}, aggressiveness=1).fit(X, y)
