"""The refit started early, on a thread that ran out of work: which candidate it picks, that it
is handed over only when that candidate is the best, and when a search starts it."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.model_selection as skms
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring

from distml.estimators.model_selection import GridSearchCV
from distml.estimators.model_selection._graph import SearchPlan
from distml.estimators.model_selection._refit import EarlyRefit, leading_candidate
from distml.estimators.model_selection._run import run_plan


def scored(score, error=None):
    return {"test_scores": score, "fit_error": error}


def test_leader_is_the_best_mean_over_the_folds_scored_so_far():
    out = [scored(0.5), scored(0.7),        # candidate 0: 0.6 over two folds
           scored(0.9), None,               # candidate 1: 0.9 over one fold
           None, None]                      # candidate 2: nothing yet
    assert leading_candidate(out, 2, "score") == 1
    assert leading_candidate([None] * 4, 2, "score") is None


def test_leader_skips_failures_and_non_finite_scores_and_keeps_the_first_of_ties():
    out = [scored(np.nan), scored(0.2),
           scored(0.4), scored(0.4),
           scored(0.4, error="Traceback ..."), scored(0.4),
           scored(0.4), scored(0.4)]
    assert leading_candidate(out, 2, "score") == 1  # 2 and 3 tie with 1; 0 counts only 0.2


def test_leader_by_the_refit_metric_of_several():
    out = [scored({"acc": 0.9, "f1": 0.1}), scored({"acc": 0.1, "f1": 0.9})]
    assert leading_candidate(out, 1, "acc") == 0
    assert leading_candidate(out, 1, "f1") == 1


@pytest.fixture
def data():
    return make_classification(n_samples=300, n_features=8, random_state=0)


def test_early_refit_handed_over_only_for_the_best(client, data):
    X, y = data
    candidates = [{"C": 0.01}, {"C": 1.0}]
    early = EarlyRefit(client, LogisticRegression(), candidates, 1, "score", X, y, {})
    early.start([scored(0.5), scored(0.8)])
    model, seconds, warned = early.take(1)
    assert model.C == 1.0 and seconds >= 0 and warned == []
    np.testing.assert_array_equal(model.coef_, LogisticRegression(C=1.0).fit(X, y).coef_)
    early = EarlyRefit(client, LogisticRegression(), candidates, 1, "score", X, y, {})
    early.start([scored(0.5), scored(0.8)])
    assert early.take(0) is None  # candidate 1 led, 0 won: the early one is cancelled
    assert early.take(1) is None  # and handed over at most once
    assert EarlyRefit(client, LogisticRegression(), candidates, 1, "score", X, y, {}
                      ).take(0) is None  # never started
    early = EarlyRefit(client, LogisticRegression(), candidates, 1, "score", X, y, {})
    early.start([scored(0.5), scored(0.8)])
    model, _, _ = early.result(0)  # the leader lost: the best is refitted instead
    assert model.C == 0.01
    np.testing.assert_array_equal(model.coef_, LogisticRegression(C=0.01).fit(X, y).coef_)


def test_plan_calls_on_idle_once_when_a_thread_runs_out_of_work(client, data):
    """2 threads, 8 candidates x 3 folds one per task: after the 22nd result only two tasks
    are left, so a thread may be idle; that is when, and the only time, on_idle runs."""
    X, y = data
    plan = SearchPlan(LogisticRegression(), {}, check_scoring(LogisticRegression()), None,
                      False, np.nan, True, salt="test")
    finals = []
    for s, (train, test) in enumerate(skms.KFold(3).split(X)):
        fold = plan.add_fold(s, X, y, train, test, {})
        finals += [plan.add_candidate({"C": c}, fold) for c in np.logspace(-3, 2, 8)]
    results, calls = [], []
    run_plan(plan, finals, lambda key, value: results.append(key), client, wave_size=8,
             batch_size=1, on_idle=lambda: calls.append(len(results)), threads=2)
    assert sorted(results) == sorted(finals)
    assert calls == [len(finals) - 2]


def test_search_with_early_refit_gives_scikit_learns_model(client, data):
    X, y = data
    grid = {"C": [0.001, 0.01, 0.1, 1.0, 10.0]}
    ours = GridSearchCV(LogisticRegression(), grid, cv=3, progress=False).fit(X, y)
    ref = skms.GridSearchCV(LogisticRegression(), grid, cv=3).fit(X, y)
    assert ours.best_params_ == ref.best_params_
    np.testing.assert_array_equal(ours.best_estimator_.coef_, ref.best_estimator_.coef_)
