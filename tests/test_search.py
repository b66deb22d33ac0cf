"""GridSearchCV and RandomizedSearchCV on a real cluster: the same results as scikit-learn's,
shared pipeline prefixes fitted once (counted), bad input handled as scikit-learn does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.model_selection as skms
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_diabetes, load_digits, make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import check_scoring
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from distml.estimators.model_selection import GridSearchCV, RandomizedSearchCV
from distml.estimators.model_selection._graph import SearchPlan, params_key
from distml.estimators.model_selection._run import batches, fusions


class CountingPCA(TransformerMixin, BaseEstimator):
    """PCA that appends one line per fit to ``log`` (a file shared by the worker processes):
    a real count of the fits that ran, as ``n_components rows``."""

    def __init__(self, n_components: int = 2, log: str = "") -> None:
        self.n_components = n_components
        self.log = log

    def fit(self, X, y=None):
        with open(self.log, "a") as f:
            f.write(f"{self.n_components} {len(X)}\n")
        self.pca_ = PCA(self.n_components).fit(X)
        return self

    def transform(self, X):
        return self.pca_.transform(X)


class FailingClassifier(LogisticRegression):
    """Raises in ``fit`` when ``C`` is the poisoned value."""

    def __init__(self, C: float = 1.0, poison: float = -1.0, max_iter: int = 100) -> None:
        super().__init__(C=C, max_iter=max_iter)
        self.poison = poison

    def fit(self, X, y, **kw):
        if self.C == self.poison:
            raise ValueError("poisoned candidate")
        return super().fit(X, y, **kw)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def assert_same_results(ours, ref) -> None:
    """Every key of ``cv_results_`` equal (times: same shape), and the same best candidate."""
    assert sorted(ours.cv_results_) == sorted(ref.cv_results_)
    for key, expected in ref.cv_results_.items():
        got = ours.cv_results_[key]
        if "time" in key:
            assert np.shape(got) == np.shape(expected)
        elif key == "params":
            assert got == expected
        elif isinstance(expected, np.ma.MaskedArray):
            assert isinstance(got, np.ma.MaskedArray)
            assert list(got.mask) == list(expected.mask)
            assert [repr(v) for v in got.data] == [repr(v) for v in expected.data]
        else:
            np.testing.assert_allclose(np.asarray(got, dtype=float),
                                       np.asarray(expected, dtype=float), rtol=1e-10,
                                       err_msg=key)
    for attr in ("best_index_", "best_params_", "best_score_", "n_splits_", "multimetric_"):
        if hasattr(ref, attr):
            assert getattr(ours, attr) == getattr(ref, attr), attr


def pipeline():
    return Pipeline([("scale", StandardScaler()), ("pca", PCA()),
                     ("clf", LogisticRegression(max_iter=300))])


CASES = {
    "pipeline-kfold": (pipeline(), {"pca__n_components": [5, 10], "clf__C": [0.1, 1.0]},
                       dict(cv=3)),
    "svc-stratified-multimetric": (
        SVC(), {"C": [0.5, 2.0], "kernel": ["rbf", "linear"]},
        dict(cv=skms.StratifiedKFold(4, shuffle=True, random_state=0),
             scoring=["accuracy", "f1_macro"], refit="f1_macro", return_train_score=True)),
    "knn-shufflesplit": (KNeighborsClassifier(), [{"n_neighbors": [1, 5]},
                                                  {"n_neighbors": [3], "weights": ["distance"]}],
                         dict(cv=skms.ShuffleSplit(3, test_size=0.3, random_state=1))),
    "pipeline-step-replaced": (
        pipeline(), {"pca": [PCA(5), "passthrough"], "clf__C": [0.1, 1.0]},
        dict(cv=3, return_train_score=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_search_equals_scikit_learn(client, digits, case):
    est, grid, kw = CASES[case]
    X, y = digits
    ours = GridSearchCV(est, grid, progress=False, **kw).fit(X, y)
    ref = skms.GridSearchCV(est, grid, **kw).fit(X, y)
    assert_same_results(ours, ref)
    # ours refits on a worker with one BLAS thread, scikit-learn here: equal up to rounding
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99


def test_regression_group_splitter_and_callable_refit(client):
    X, y = load_diabetes(return_X_y=True)
    groups = np.arange(len(y)) % 7

    def lowest_std(results):  # refit as a callable: the index of the steadiest candidate
        return int(np.argmin(results["std_test_score"]))

    kw = dict(cv=skms.GroupKFold(3), scoring="neg_mean_squared_error", refit=lowest_std)
    grid = {"alpha": [0.01, 0.1, 1.0, 10.0]}
    ours = GridSearchCV(Ridge(), grid, progress=False, **kw).fit(X, y, groups=groups)
    ref = skms.GridSearchCV(Ridge(), grid, **kw).fit(X, y, groups=groups)
    assert_same_results(ours, ref)
    assert not hasattr(ours, "best_score_")


def test_randomized_search_equals_scikit_learn(client, digits):
    X, y = digits
    dist = {"C": loguniform(1e-3, 1e2), "gamma": ["scale", 0.001]}
    kw = dict(n_iter=5, cv=3, random_state=0, return_train_score=True)
    ours = RandomizedSearchCV(SVC(), dist, progress=False, **kw).fit(X, y)
    ref = skms.RandomizedSearchCV(SVC(), dist, **kw).fit(X, y)
    assert_same_results(ours, ref)


def test_without_client_same_results(digits):
    X, y = digits
    grid = {"pca__n_components": [5, 10], "clf__C": [1.0]}
    ours = GridSearchCV(pipeline(), grid, cv=3, progress=False).fit(X, y)
    assert_same_results(ours, skms.GridSearchCV(pipeline(), grid, cv=3).fit(X, y))


def _fits(log) -> list[tuple[str, int]]:
    """``(n_components, rows)`` of each fit logged."""
    if not log.exists():
        return []
    return [(n, int(rows)) for n, rows in (line.split() for line in log.read_text().splitlines())]


def _fit_counts(log) -> list[str]:
    return [n for n, _ in _fits(log)]


def test_each_prefix_fitted_once_per_fold(client, digits, tmp_path):
    """3 steps, 6 candidates, cv=3: each distinct (prefix, params, fold) is fitted once, and
    the count is read from what the workers actually ran."""
    X, y = digits
    log = tmp_path / "fits.log"
    est = Pipeline([("scale", StandardScaler()), ("pca", CountingPCA(log=str(log))),
                    ("clf", LogisticRegression(max_iter=300))])
    grid = {"pca__n_components": [4, 8], "clf__C": [0.01, 0.1, 1.0]}
    ours = GridSearchCV(est, grid, cv=3, progress=False).fit(X, y)
    fits = _fits(log)
    # 2 PCA settings x 3 folds ...
    assert sorted(n for n, rows in fits if rows < len(X)) == ["4"] * 3 + ["8"] * 3
    # ... and the refit of the best pipeline on a worker, after a refit of the candidate
    # leading when a worker ran out of work (if it was not the best in the end)
    refits = [n for n, rows in fits if rows == len(X)]
    assert refits[-1] == str(ours.best_params_["pca__n_components"]) and len(refits) <= 2
    assert ours.n_prefix_fits_ == 3 + 2 * 3  # the scaler on 3 folds, PCA on 6 (fold, params)
    log.unlink()
    ref = skms.GridSearchCV(est, grid, cv=3).fit(X, y)
    assert len(_fit_counts(log)) == 6 * 3 + 1  # scikit-learn refits the prefix per candidate
    assert_same_results(ours, ref)


def test_feature_union_branches_shared(client, digits, tmp_path):
    """A FeatureUnion branch whose parameters do not change is fitted once per fold for all
    values of its sibling's parameters."""
    X, y = digits
    fixed, varied = tmp_path / "fixed.log", tmp_path / "varied.log"
    union = FeatureUnion([("a", CountingPCA(3, log=str(fixed))),
                          ("b", CountingPCA(2, log=str(varied)))],
                         transformer_weights={"a": 2.0, "b": 1.0})
    est = Pipeline([("scale", StandardScaler()), ("union", union),
                    ("clf", LogisticRegression(max_iter=300))])
    grid = {"union__b__n_components": [2, 4, 6], "clf__C": [0.1, 1.0]}
    ours = GridSearchCV(est, grid, cv=3, refit=False, progress=False).fit(X, y)
    assert len(_fit_counts(fixed)) == 3
    assert len(_fit_counts(varied)) == 3 * 3
    ref = skms.GridSearchCV(est, grid, cv=3, refit=False).fit(X, y)
    assert_same_results(ours, ref)


def test_many_candidates_run_in_waves(client):
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    grid = {"C": list(np.logspace(-3, 2, 40))}
    ours = GridSearchCV(LogisticRegression(), grid, cv=3, wave_size=8, progress=False).fit(X, y)
    assert_same_results(ours, skms.GridSearchCV(LogisticRegression(), grid, cv=3).fit(X, y))
    cluster = client.cluster
    assert not [k for k in cluster.scheduler.state.tasks if k.startswith("search-")]


# ---------------------------------------------------------------------- bad input
def test_unknown_parameter_name_raises_like_scikit_learn(client, digits):
    X, y = digits
    for grid in ({"clf__bogus": [1]}, {"nostep__C": [1]}, {"bogus": [1]}):
        with pytest.raises(ValueError) as ref:
            skms.GridSearchCV(pipeline(), grid, cv=2).fit(X, y)
        with pytest.raises(ValueError) as ours:
            GridSearchCV(pipeline(), grid, cv=2, progress=False).fit(X, y)
        assert str(ours.value) == str(ref.value)


def test_empty_grid_and_unknown_scorer_raise_like_scikit_learn(client, digits):
    X, y = digits
    for make in (lambda m: m.GridSearchCV(SVC(), {"C": []}),
                 lambda m: m.GridSearchCV(SVC(), {"C": [1]}, scoring="no-such-scorer"),
                 lambda m: m.GridSearchCV(SVC(), {"C": [1]}, scoring=["accuracy"], refit=True)):
        with pytest.raises(Exception) as ref:
            make(skms).fit(X, y)
        with pytest.raises(Exception) as ours:
            make(__import__("distml.estimators.model_selection",
                            fromlist=["GridSearchCV"])).fit(X, y)
        assert type(ours.value) is type(ref.value)
        assert str(ours.value) == str(ref.value)


def test_raising_candidate_gets_error_score_and_same_warning(client, digits):
    X, y = digits
    grid = {"C": [0.1, 7.0, 1.0]}
    est = FailingClassifier(poison=7.0, max_iter=300)
    with pytest.warns(FitFailedWarning) as ours_warned:
        ours = GridSearchCV(est, grid, cv=3, error_score=-1.0, progress=False).fit(X, y)
    with pytest.warns(FitFailedWarning) as ref_warned:
        ref = skms.GridSearchCV(est, grid, cv=3, error_score=-1.0).fit(X, y)
    assert_same_results(ours, ref)
    assert list(ours.cv_results_["mean_test_score"])[1] == -1.0
    first = lambda ws: next(str(w.message) for w in ws if w.category is FitFailedWarning)  # noqa
    assert first(ours_warned).splitlines()[:3] == first(ref_warned).splitlines()[:3]


def test_raising_candidate_with_error_score_raise(client, digits):
    X, y = digits
    est = FailingClassifier(poison=7.0)
    with pytest.raises(ValueError, match="poisoned candidate"):
        GridSearchCV(est, {"C": [7.0, 1.0]}, cv=2, error_score="raise",
                     progress=False).fit(X, y)
    with warnings.catch_warnings():  # the cluster is still usable afterwards
        warnings.simplefilter("ignore")
        GridSearchCV(est, {"C": [1.0]}, cv=2, progress=False).fit(X, y)


def test_all_candidates_failing_raises_like_scikit_learn(client, digits):
    X, y = digits
    est = FailingClassifier(poison=7.0)
    with pytest.raises(ValueError) as ref:
        skms.GridSearchCV(est, {"C": [7.0]}, cv=2).fit(X, y)
    with pytest.raises(ValueError) as ours:
        GridSearchCV(est, {"C": [7.0]}, cv=2, progress=False).fit(X, y)
    assert str(ours.value).splitlines()[0] == str(ref.value).splitlines()[0]


def test_progress_counts_candidate_folds(client, digits, monkeypatch):
    pytest.importorskip("distml.diagnostics.progress")
    from distml.estimators.model_selection import _progress, _search
    made = []

    class Recorded(_progress.SearchProgress):
        def __init__(self, name, total, enabled, **fields):
            super().__init__(name, total, False, **fields)  # drawn nowhere in tests
            made.append(self)

    monkeypatch.setattr(_search, "SearchProgress", Recorded)
    X, y = digits
    GridSearchCV(SVC(), {"C": [0.5, 1.0, 2.0]}, cv=2).fit(X, y)
    assert len(made) == 1 and made[0].total == 6 and made[0].done == 6
    assert made[0]._bar is not None and made[0]._bar.n == 6



def test_progress_reports_to_the_dashboard_at_most_every_quarter_second():
    pytest.importorskip("distml.diagnostics.progress")
    from distml.estimators.model_selection import _progress
    sent = []

    class Counted(_progress.SearchProgress):
        def _send(self):
            sent.append(self.done)
            super()._send()

    progress = Counted("GridSearchCV", 500, False)
    for _ in range(500):  # well within a quarter second: the start and the end only
        progress.update(1)
    progress.close()
    assert sent[0] == 0 and sent[-1] == 500 and len(sent) <= 3

def test_candidates_sharing_a_prefix_run_as_one_task(client, digits):
    """Final fits that read the same fitted prefix on the same fold run in one task (here 4
    values of C per prefix and fold: 12 tasks, not 48), with scikit-learn's results.  The PCA
    fit that only one such task uses runs inside it; the scaler, which 4 use, is a task."""
    X, y = digits
    grid = {"pca__n_components": [3, 5, 8, 10], "clf__C": [0.01, 0.1, 1.0, 10.0]}
    recorder = client.cluster.scheduler.recorder
    seen = recorder.recorded
    ours = GridSearchCV(pipeline(), grid, cv=3, progress=False).fit(X, y)
    keys = [r[3] for r in list(recorder.task_stream)[-(recorder.recorded - seen):]]
    assert sum(k.startswith("search-batch-") for k in keys) == 4 * 3
    assert not [k for k in keys if k.startswith("search-final-")]
    assert sum(k.startswith("search-step-") for k in keys) == 3
    assert ours.n_prefix_fits_ == 3 + 4 * 3
    assert_same_results(ours, skms.GridSearchCV(pipeline(), grid, cv=3).fit(X, y))


def test_a_step_runs_inside_the_task_of_its_only_users(digits):
    """A prefix step is fused into a task only when every node that reads it is in that
    task: with 2 candidates per task, each PCA fit feeds two tasks and stays a task."""
    X, y = digits
    plan = SearchPlan(pipeline(), {}, check_scoring(LogisticRegression()), None, False,
                      np.nan, True, salt="test")
    fold = plan.add_fold(0, X, y, np.arange(0, 1200), np.arange(1200, len(X)), {})
    finals = [plan.add_candidate({"pca__n_components": n, "clf__C": c}, fold)
              for n in (3, 5) for c in (0.1, 1.0, 10.0, 100.0)]
    steps = {plan.nodes[f].deps[-1] for f in finals}
    assert len(steps) == 2  # one PCA fit per n_components
    units = batches(plan, finals, 4)
    assert sorted(fusions(plan, units).values()) == sorted(steps)
    assert fusions(plan, batches(plan, finals, 2)) == {}


class CountingScaler(TransformerMixin, BaseEstimator):
    """StandardScaler that appends one line per fit to ``log`` (shared by the workers), as
    ``columns rows``."""

    def __init__(self, log: str = "", with_mean: bool = True) -> None:
        self.log = log
        self.with_mean = with_mean

    def fit(self, X, y=None):
        with open(self.log, "a") as f:
            f.write(f"{X.shape[1]} {X.shape[0]}\n")
        self.scaler_ = StandardScaler(with_mean=self.with_mean).fit(X)
        return self

    def transform(self, X):
        return self.scaler_.transform(X)


def test_column_transformer_branches_shared(client, digits, tmp_path):
    """A ColumnTransformer branch (same transformer, parameters and columns) is fitted once
    per fold for all values of the other branch's parameters and of the final step's; the
    remainder and weights are stacked as scikit-learn stacks them."""
    from sklearn.compose import ColumnTransformer
    X, y = digits
    fixed, varied = tmp_path / "fixed.log", tmp_path / "varied.log"
    columns = ColumnTransformer(
        [("scaled", CountingScaler(log=str(fixed)), list(range(0, 32))),
         ("pca", CountingPCA(3, log=str(varied)), slice(32, 56)),
         ("none", "drop", [])],
        remainder="passthrough", transformer_weights={"pca": 0.5})
    est = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=300))])
    grid = {"columns__pca__n_components": [2, 4, 6], "clf__C": [0.1, 1.0]}
    ours = GridSearchCV(est, grid, cv=3, refit=False, progress=False).fit(X, y)
    assert len(_fit_counts(fixed)) == 3          # 6 candidates, 3 folds: the scaler 3 times
    assert len(_fit_counts(varied)) == 3 * 3
    assert ours.n_prefix_fits_ == 3 + 3 * 3 + 3  # scaler, PCA, the passthrough remainder
    ref = skms.GridSearchCV(est, grid, cv=3, refit=False).fit(X, y)
    assert_same_results(ours, ref)


def test_column_transformer_sparse_output_and_failures_like_scikit_learn(client, digits):
    """Sparse branch outputs stacked sparse or dense by the training density as scikit-learn
    decides it; a failing branch gives the candidate error_score, not the whole search."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder
    X, y = digits
    X = np.hstack([X, (X[:, 10:12] > 8)]).astype(float)
    columns = ColumnTransformer([("hot", OneHotEncoder(handle_unknown="ignore"), [64, 65]),
                                 ("pca", PCA(3), list(range(64)))], sparse_threshold=0.3)
    est = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=300))])
    grid = {"columns__sparse_threshold": [0.0, 0.9], "columns__pca__n_components": [3, 100]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        ours = GridSearchCV(est, grid, cv=3, progress=False).fit(X, y)
        ref = skms.GridSearchCV(est, grid, cv=3).fit(X, y)
    assert_same_results(ours, ref)
    assert np.isnan(ours.cv_results_["mean_test_score"]).sum() == 2  # PCA(100) on 66 columns


def test_params_key_keeps_apart_what_configures_differently():
    keys = [params_key({"C": v}) for v in (1, 1.0, True, 0.0, -0.0, np.float64(1.0), None)]
    assert len(set(keys)) == len(keys)
    assert params_key({"a": 1, "b": "x"}) == params_key({"b": "x", "a": 1})
    arrays = [params_key({"w": np.arange(3)}), params_key({"w": np.arange(1, 4)})]
    assert arrays[0] != arrays[1] and all(isinstance(k, str) for k in arrays)  # hashed
