"""The task graph of a search over in-memory data, with identical work done once.

A candidate evaluated on one fold is a chain of nodes: the fold's split (one node per fold), one
node per fitted pipeline step, and a last node that fits the final estimator and scores it.
Nodes are keyed by a hash of what they compute (the fold, and every step up to this one with its
parameters), so candidates that share a pipeline prefix share its nodes: ``StandardScaler ->
PCA(n) -> LogisticRegression(C)`` over 4 values of ``n`` and 4 of ``C`` on 3 folds fits the scaler
3 times and PCA 12 times, not 48.  The branches of a ``FeatureUnion`` step are nodes of their own,
so a branch whose parameters do not change is fitted once for all values of its siblings';
``ColumnTransformer`` branches likewise (see :mod:`._columns`).

The functions named ``run_*`` execute on the workers.  A failing fit returns a :class:`Failure`
(unless ``error_score="raise"``), which later nodes pass on, so one raising candidate never stops
the others.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from traceback import format_exc
from typing import Any, Callable

import joblib
import xxhash
import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection._validation import _score
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params, _num_samples

from distml.estimators.model_selection._task_env import on_worker as _on_worker

__all__ = ["Failure", "FoldData", "Node", "SearchPlan", "Stage", "reissue"]


# ---------------------------------------------------------------------- values on the workers
@dataclass
class FoldData:
    """One fold's train and test rows, and the fit/score parameters sliced to them."""
    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any
    fit_params: dict
    score_train: dict
    score_test: dict


@dataclass
class Stage:
    """A fitted pipeline prefix's output: transformed train and test rows, the time spent
    fitting it, and the warnings raised on the way (re-issued in the client)."""
    X_train: Any
    X_test: Any
    fit_time: float
    warnings: list = field(default_factory=list)


@dataclass
class Failure:
    """A fit that raised (with ``error_score`` a number): its traceback and the time it took."""
    traceback: str
    fit_time: float
    warnings: list = field(default_factory=list)


def _recording(func: Callable, *args: Any) -> tuple[Any, list]:
    """``func(*args)`` and the warnings it raised, as picklable tuples."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = func(*args)
    return value, [(w.category, str(w.message), w.filename, w.lineno) for w in caught]


_shown: dict = {}


def reissue(warned: list) -> None:
    """Warn in this process what a worker recorded (same category, message and location; shown
    once per location under the default filter, as in one process)."""
    for category, message, filename, lineno in warned:
        warnings.warn_explicit(message, category, filename, lineno, registry=_shown)


def run_fold(X: Any, y: Any, train: np.ndarray, test: np.ndarray, fit_params: dict,
             score_params: dict, estimator: Any) -> FoldData:
    """Split ``X``, ``y`` (and sample-aligned parameters) into one fold's train and test sets."""
    X_train, y_train = _safe_split(estimator, X, y, train)
    X_test, y_test = _safe_split(estimator, X, y, test, train)
    return FoldData(X_train, y_train, X_test, y_test,
                    _check_method_params(X, params=fit_params, indices=train),
                    _check_method_params(X, params=score_params, indices=train),
                    _check_method_params(X, params=score_params, indices=test))


def _inputs(fold: FoldData, source: Any) -> tuple[Any, Any, float, list]:
    if isinstance(source, Stage):
        return source.X_train, source.X_test, source.fit_time, source.warnings
    return fold.X_train, fold.X_test, 0.0, []


def _fit_transform(step: Any, fold: FoldData, X_train: Any, X_test: Any, fit_params: dict
                   ) -> tuple[Any, Any]:
    if fold.y_train is None:
        Xt_train = step.fit_transform(X_train, **fit_params)
    else:
        Xt_train = step.fit_transform(X_train, fold.y_train, **fit_params)
    return Xt_train, step.transform(X_test)


def _run_step(step: Any, fold: FoldData, source: Any, fit_params: dict, error_score: Any
              ) -> Stage | Failure:
    if isinstance(source, Failure):
        return source
    X_train, X_test, spent, warned = _inputs(fold, source)
    start = time.time()
    try:
        (Xt_train, Xt_test), new = _recording(_fit_transform, step, fold, X_train, X_test,
                                              fit_params)
    except Exception:
        if error_score == "raise":
            raise
        return Failure(format_exc(), spent + time.time() - start, warned)
    return Stage(Xt_train, Xt_test, spent + time.time() - start, warned + new)


def run_step(step: Any, fold: FoldData, source: Any, fit_params: dict,
             error_score: Any) -> Stage | Failure:
    """Fit one pipeline step on the previous stage's train output; transform train and test."""
    return _on_worker(_run_step, step, fold, source, fit_params, error_score)


def _hstack(parts: list) -> Any:
    if any(sp.issparse(p) for p in parts):
        return sp.hstack(parts).tocsr()
    return np.hstack(parts)


def first_failure(source: Any, branches: tuple) -> Failure | None:
    """The failure a join passes on: its input's, else its first failed branch's."""
    return next((b for b in (source, *branches) if isinstance(b, Failure)), None)


def empty_stage(X_train: Any, X_test: Any, spent: float, warned: list) -> Stage:
    """The output of a join with no branch: no columns."""
    return Stage(np.zeros((_num_samples(X_train), 0)), np.zeros((_num_samples(X_test), 0)),
                 spent, warned)


def run_union(fold: FoldData, source: Any, weights: list, *branches: Any) -> Stage | Failure:
    """Join the outputs of a FeatureUnion's branches (weighted, side by side), as the union's
    own ``fit_transform`` and ``transform`` would."""
    failed = first_failure(source, branches)
    if failed is not None:
        return failed
    X_train, X_test, spent, warned = _inputs(fold, source)
    if not branches:
        return empty_stage(X_train, X_test, spent, warned)
    weigh = lambda X, w: X if w is None else X * w  # noqa: E731
    train = _hstack([weigh(b.X_train, w) for b, w in zip(branches, weights)])
    test = _hstack([weigh(b.X_test, w) for b, w in zip(branches, weights)])
    own = sum(b.fit_time - spent for b in branches)
    return Stage(train, test, spent + own, warned + [w for b in branches
                                                     for w in b.warnings[len(warned):]])


def _fit_and_score(estimator: Any, fold: FoldData, source: Any, fit_params: dict, scorer: Any,
                   return_train_score: bool, error_score: Any, score_names: list | None
                   ) -> dict:
    """Fit the final estimator and score it: the fields of one row of scikit-learn's results."""
    result: dict[str, Any] = {}
    if isinstance(source, Failure):
        failure, fit_time, warned = source, source.fit_time, list(source.warnings)
    else:
        X_train, X_test, spent, warned = _inputs(fold, source)
        warned = list(warned)
        start = time.time()
        failure = None
        try:
            _, new = _recording(_fit, estimator, X_train, fold.y_train, fit_params)
            warned += new
        except Exception:
            if error_score == "raise":
                raise
            failure = Failure(format_exc(), 0.0)
        fit_time = spent + time.time() - start
    if failure is not None:
        scores: Any = ({name: error_score for name in score_names} if score_names is not None
                       else error_score)
        result["fit_error"] = failure.traceback
        result["test_scores"] = scores
        if return_train_score:
            result["train_scores"] = scores.copy() if isinstance(scores, dict) else scores
        score_time = 0.0
    else:
        result["fit_error"] = None
        start = time.time()
        result["test_scores"], new = _recording(_score, estimator, X_test, fold.y_test, scorer,
                                                fold.score_test, error_score)
        score_time = time.time() - start
        warned += new
        if return_train_score:
            result["train_scores"], new = _recording(_score, estimator, X_train, fold.y_train,
                                                     scorer, fold.score_train, error_score)
            warned += new
    result["n_test_samples"] = _num_samples(fold.X_test)
    result["fit_time"] = fit_time
    result["score_time"] = score_time
    result["warnings"] = warned
    return result


def _fit(estimator: Any, X: Any, y: Any, fit_params: dict) -> None:
    if y is None:
        estimator.fit(X, **fit_params)
    else:
        estimator.fit(X, y, **fit_params)


def _refit(estimator: Any, X: Any, y: Any, fit_params: dict) -> tuple[Any, float, list]:
    start = time.time()
    _, warned = _recording(_fit, estimator, X, y, fit_params)
    return estimator, time.time() - start, warned


def run_refit(estimator: Any, X: Any, y: Any, fit_params: dict) -> tuple[Any, float, list]:
    """Fit the best candidate on all the data, as its candidate-folds were fitted (one BLAS
    thread): the fitted estimator, the seconds it took and the warnings raised."""
    return _on_worker(_refit, estimator, X, y, fit_params)


def run_final(estimator: Any, fold: FoldData, source: Any, fit_params: dict, scorer: Any,
              return_train_score: bool, error_score: Any, score_names: list | None) -> dict:
    """Fit and score one candidate on one fold (after its shared prefix, if any)."""
    return _on_worker(_fit_and_score, estimator, fold, source, fit_params, scorer,
                      return_train_score, error_score, score_names)


# ---------------------------------------------------------------------- the plan (client side)
@dataclass(frozen=True)
class Ref:
    """Stands for the output of the node ``key`` among another node's arguments."""
    key: str


@dataclass
class Node:
    """One task of the search: ``func(*args)`` with :class:`Ref` arguments resolved."""
    key: str
    func: Callable
    args: tuple

    @property
    def deps(self) -> list[str]:
        return [a.key for a in self.args if isinstance(a, Ref)]


def token(*parts: Any) -> str:
    """A stable hash of ``parts`` (estimators hash by their class and parameters)."""
    return joblib.hash(parts)


def params_key(params: dict) -> Any:
    """A hashable stand-in for ``params`` (values to set on an estimator) that is cheaper than
    their token when every value is a plain scalar: each value's type and repr, so that 1, 1.0
    and True, or 0.0 and -0.0, stay apart."""
    if all(type(v) in _SCALARS or (isinstance(v, np.generic) and not isinstance(v, np.void))
           for v in params.values()):
        return tuple(sorted((k, type(v).__name__, repr(v)) for k, v in params.items()))
    return token(params)


_SCALARS = frozenset({bool, int, float, str, type(None)})


def _join(*parts: str) -> str:
    """A short hash of already-hashed parts (cheap: no pickling)."""
    return xxhash.xxh3_128_hexdigest("\x00".join(parts).encode())


def configured(obj: Any, params: dict) -> Any:
    """``obj`` (an unfitted estimator) cloned with ``params`` set, as the search sets them."""
    if not params:
        return clone(obj)
    return clone(obj).set_params(**clone(params, safe=False))


def pipeline_steps(estimator: Any, params: dict, fit_params: dict, shared: dict | None = None
                   ) -> list[tuple[str, Any, dict]] | None:
    """``[(name, configured step or "passthrough"/None, step fit params), ...]`` of a candidate
    of a Pipeline, or None when it must be fitted as one piece (not a pipeline, pipeline-level
    parameters searched or passed, a passthrough final step).  With ``shared`` (a dict kept
    across the candidates of a search), a step configured the same way for several candidates
    is one object, cloned once (its hash too is then computed once)."""
    if not isinstance(estimator, Pipeline):
        return None
    names = [name for name, _ in estimator.steps]
    for key in [*params, *fit_params]:
        head, sep, _ = key.partition("__")
        if head not in names or (key in fit_params and not sep):
            return None
    steps = []
    for name, step in estimator.steps:
        obj = params.get(name, step)
        sub = {k.partition("__")[2]: v for k, v in params.items() if k.startswith(name + "__")}
        if is_skipped(obj):
            if sub:
                return None
            steps.append((name, obj, {}))
            continue
        fit = {k.partition("__")[2]: v for k, v in fit_params.items()
               if k.startswith(name + "__")}
        if shared is None:
            steps.append((name, configured(obj, sub), fit))
            continue
        ident = (name, id(obj), params_key(sub))
        if ident not in shared:
            shared[ident] = (obj, configured(obj, sub))  # obj kept: its id stays its own
        steps.append((name, shared[ident][1], fit))
    if is_skipped(steps[-1][1]):
        return None
    return steps


def is_skipped(step: Any) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


class SearchPlan:
    """The nodes of one search, deduplicated by what they compute.

    ``add_fold`` adds a fold's split, ``add_candidate`` the chain that evaluates one candidate
    on one fold and returns the key of its last node; nodes already present (a shared prefix)
    are reused.  ``prefix_fits`` counts the distinct step fits the plan holds.
    """

    def __init__(self, estimator: Any, fit_params: dict, scorer: Any, score_names: list | None,
                 return_train_score: bool, error_score: Any, share_prefixes: bool,
                 salt: str) -> None:
        self.estimator = estimator
        self.fit_params = fit_params
        self.scorer = scorer
        self.score_names = score_names
        self.return_train_score = return_train_score
        self.error_score = error_score
        self.share_prefixes = share_prefixes
        self.salt = salt
        self.nodes: dict[str, Node] = {}
        self.prefix_fits = 0
        self._hashes: dict[int, tuple[Any, str]] = {}
        self._recipes: dict[int, tuple[dict, list | None, Any]] = {}
        self._steps: dict[tuple, tuple[Any, Any]] = {}

    def _add(self, kind: str, ident: str, func: Callable, *args: Any) -> str:
        key = f"search-{kind}-{ident}"
        if key not in self.nodes:
            self.nodes[key] = Node(key, func, args)
            if kind == "step":
                self.prefix_fits += 1
        return key

    def add_fold(self, index: int, X: Any, y: Any, train: np.ndarray, test: np.ndarray,
                 score_params: dict) -> str:
        return self._add("fold", token(self.salt, index), run_fold, X, y, train, test,
                         self.fit_params, score_params, self.estimator)

    def _union(self, fold: str, source: str, source_id: str, name: str, union: FeatureUnion
               ) -> str:
        """One node per branch of a FeatureUnion and one joining them."""
        branches, weights = [], []
        for bname, trans in union.transformer_list:
            if trans == "drop":
                continue
            if trans == "passthrough":
                from sklearn.preprocessing import FunctionTransformer
                trans = FunctionTransformer(feature_names_out="one-to-one")
            ident = _join(source_id, name, bname, self._hash(trans))
            branches.append(Ref(self._add("step", ident, run_step, trans, Ref(fold),
                                          Ref(source), {}, self.error_score)))
            weights.append((union.transformer_weights or {}).get(bname))
        return self._add("union", _join(source_id, name, self._hash(union)), run_union,
                         Ref(fold), Ref(source), weights, *branches)

    def _columns(self, fold: str, source: str, source_id: str, name: str, step: Any,
                 branches: list) -> str:
        """One node per branch of a ColumnTransformer (see :mod:`._columns`), one joining."""
        from distml.estimators.model_selection._columns import (REMAINDER, run_column_branch,
                                                                run_column_join)
        selections = [columns for _, _, columns, _ in branches if not (
            isinstance(columns, str) and columns == REMAINDER)]
        refs = []
        for bname, trans, columns, weight in branches:
            what = self._hash(trans) if not isinstance(trans, str) else trans
            spec = token(columns, weight, selections if columns is REMAINDER else None)
            ident = _join(source_id, name, bname, what, spec)
            refs.append(Ref(self._add("step", ident, run_column_branch, trans, Ref(fold),
                                      Ref(source), columns, selections, weight,
                                      self.error_score)))
        return self._add("columns", _join(source_id, name, self._hash(step)), run_column_join,
                         Ref(fold), Ref(source), [b[0] for b in branches],
                         step.sparse_threshold, self.error_score, *refs)

    def _hash(self, obj: Any) -> str:
        """:func:`token` of ``obj``, computed once per object (the configured steps of a
        candidate are the same objects on every fold)."""
        if type(obj) is dict and not obj:  # a step without fit parameters
            return "{}"
        hit = self._hashes.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = self._hashes[id(obj)] = (obj, token(obj))
        return hit[1]

    def _recipe(self, params: dict) -> tuple[list | None, Any]:
        """A candidate's configured pipeline steps (or its configured estimator, to be fitted
        as one piece), built once per candidate."""
        hit = self._recipes.get(id(params))
        if hit is None or hit[0] is not params:
            steps = (pipeline_steps(self.estimator, params, self.fit_params, self._steps)
                     if self.share_prefixes else None)
            whole = configured(self.estimator, params) if steps is None else None
            hit = self._recipes[id(params)] = (params, steps, whole)
        return hit[1], hit[2]

    def add_candidate(self, params: dict, fold: str) -> str:
        """Add the nodes evaluating candidate ``params`` on ``fold``; return the last one's key."""
        from distml.estimators.model_selection._columns import column_branches
        steps, whole = self._recipe(params)
        tail = (self.scorer, self.return_train_score, self.error_score, self.score_names)
        if steps is None:
            return self._add("final", _join(fold, self._hash(whole)), run_final, whole,
                             Ref(fold), None, self.fit_params, *tail)
        source, source_id = fold, fold
        for name, step, fit in steps[:-1]:
            if is_skipped(step):
                continue
            ident = _join(source_id, name, self._hash(step), self._hash(fit))
            columns = None if fit else column_branches(step)
            if (isinstance(step, FeatureUnion) and not fit
                    and not getattr(step, "_sklearn_output_config", None)):
                source = self._union(fold, source, source_id, name, step)
            elif columns is not None:
                source = self._columns(fold, source, source_id, name, step, columns)
            else:
                source = self._add("step", ident, run_step, step, Ref(fold), Ref(source), fit,
                                   self.error_score)
            source_id = ident
        _, final, fit = steps[-1]
        return self._add("final", _join(source_id, self._hash(final), self._hash(fit)),
                         run_final, final, Ref(fold), Ref(source) if source != fold else None,
                         fit, *tail)

    def closure(self, keys: list[str]) -> list[str]:
        """``keys`` and every node they depend on, dependencies first."""
        seen: dict[str, None] = {}

        def visit(key: str) -> None:
            if key in seen:
                return
            for dep in self.nodes[key].deps:
                visit(dep)
            seen[key] = None

        for k in keys:
            visit(k)
        return list(seen)
