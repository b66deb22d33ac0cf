"""Searches over chunked input (``distml.array`` arrays, tables) that no single worker could hold.

Folds follow block boundaries (:func:`._split.block_folds`): a fold's train and test sets are
views of the persisted blocks, never copies gathered anywhere.  Each candidate is fitted from
this process with the distributed estimators (``distml.estimators.linear_model`` and friends),
whose own work runs block by block on the workers; a pipeline prefix shared by several
candidates is fitted once per fold and its transformed blocks are persisted and reused.  Scores
come from the estimators' ``score`` or from :mod:`distml.estimators.metrics`, reduced on the
workers.
"""

from __future__ import annotations

import numbers
import time
import uuid
from collections import Counter
from traceback import format_exc
from typing import Any, Callable

from sklearn.base import clone
from sklearn.model_selection import KFold
from sklearn.model_selection._validation import _warn_or_raise_about_fit_failures

from distml.estimators import metrics
from distml.estimators._data import _align, as_chunked
from distml.estimators.model_selection._checkpoint import Checkpoint
from distml.estimators.model_selection._graph import (configured, is_skipped, pipeline_steps,
                                                      token)
from distml.estimators.model_selection._progress import SearchProgress
from distml.estimators.model_selection._split import block_folds, select_blocks

__all__ = ["fit_chunked"]


def _score_method(est: Any, X: Any, y: Any) -> float:
    return float(est.score(X, y))


def _metric(func: Callable, method: str, sign: float) -> Callable:
    def scorer(est: Any, X: Any, y: Any) -> float:
        return sign * float(func(y, getattr(est, method)(X)))
    return scorer


#: Scorer names that have a chunked implementation.
SCORERS: dict[str, Callable] = {
    "accuracy": _metric(metrics.accuracy_score, "predict", 1.0),
    "r2": _metric(metrics.r2_score, "predict", 1.0),
    "neg_mean_squared_error": _metric(metrics.mean_squared_error, "predict", -1.0),
    "neg_log_loss": _metric(metrics.log_loss, "predict_proba", -1.0),
}


def _scorer(name: Any) -> Callable:
    if name is None:
        return _score_method
    if callable(name):
        return name
    if isinstance(name, str) and name in SCORERS:
        return SCORERS[name]
    raise ValueError(f"scoring={name!r} has no chunked implementation; for chunked input use "
                     f"None (the estimator's score), a callable, or one of {sorted(SCORERS)}")


def _scorers(scoring: Any) -> tuple[Callable | dict[str, Callable], list[str] | None]:
    if isinstance(scoring, (list, tuple, set)):
        scoring = {name: name for name in scoring}
    if isinstance(scoring, dict):
        return {name: _scorer(s) for name, s in scoring.items()}, list(scoring)
    return _scorer(scoring), None


def _folds(cv: Any, nblocks: int) -> list[tuple[list[int], list[int]]]:
    if cv is None:
        return block_folds(nblocks, 5)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        return block_folds(nblocks, int(cv))
    if isinstance(cv, KFold):
        return block_folds(nblocks, cv.n_splits, cv.shuffle, cv.random_state)
    raise ValueError(f"cv={cv!r} cannot split chunked input: folds follow block boundaries, "
                     "so pass an int or a KFold")


def _evaluate(est: Any, X_train: Any, y_train: Any, X_test: Any, y_test: Any, scorer: Any,
              return_train_score: bool, error_score: Any, spent: float) -> dict:
    """Fit ``est`` and score it on one fold: one row of scikit-learn's results."""
    start = time.time()
    result: dict[str, Any] = {"fit_error": None}
    score = (lambda X, y: {n: s(est, X, y) for n, s in scorer.items()}) \
        if isinstance(scorer, dict) else (lambda X, y: scorer(est, X, y))
    try:
        est.fit(X_train, y_train)
    except Exception:
        if error_score == "raise":
            raise
        fill = {n: error_score for n in scorer} if isinstance(scorer, dict) else error_score
        result.update(fit_error=format_exc(), test_scores=fill, fit_time=spent + time.time()
                      - start, score_time=0.0)
        if return_train_score:
            result["train_scores"] = dict(fill) if isinstance(fill, dict) else fill
        return result
    result["fit_time"] = spent + time.time() - start
    start = time.time()
    result["test_scores"] = score(X_test, y_test)
    result["score_time"] = time.time() - start
    if return_train_score:
        result["train_scores"] = score(X_train, y_train)
    return result


class _Prefixes:
    """Fitted pipeline prefixes of one search, each kept while a pending candidate needs it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stages: dict[str, tuple] = {}
        self.users: Counter = Counter()

    def _persist(self, *arrays: Any) -> list:
        arrays = [as_chunked(a) for a in arrays]
        if self.client is not None:
            return self.client.persist(arrays)
        return [a.persist() for a in arrays]

    def stage(self, ident: str, step: Any, source: tuple, y_train: Any) -> tuple:
        """``(X_train, X_test, seconds)`` after fitting ``step`` on ``source``'s train part."""
        if ident not in self.stages:
            X_train, X_test, spent = source
            start = time.time()
            step.fit(X_train, y_train)
            Xt_train, Xt_test = self._persist(step.transform(X_train), step.transform(X_test))
            self.stages[ident] = (Xt_train, Xt_test, spent + time.time() - start)
        return self.stages[ident]

    def release(self, idents: list[str]) -> None:
        for ident in idents:
            self.users[ident] -= 1
            if not self.users[ident]:
                self.stages.pop(ident, None)


def _chain(estimator: Any, params: dict, fold_id: str) -> tuple[list, Any]:
    """The prefix steps ``[(ident, step)]`` and the final estimator of a candidate."""
    steps = pipeline_steps(estimator, params, {})
    if steps is None:
        return [], configured(estimator, params)
    chain, ident = [], fold_id
    for name, step, _ in steps[:-1]:
        if not is_skipped(step):
            ident = token(ident, name, step)
            chain.append((ident, step))
    return chain, steps[-1][1]


def fit_chunked(search: Any, X: Any, y: Any, **params: Any) -> Any:
    """``search.fit`` for chunked ``X``/``y``: k-fold over row blocks, distributed estimators."""
    from distml import default_client
    if params:
        raise TypeError(f"fit parameters {sorted(params)} are not supported with chunked input")
    if y is None:
        raise ValueError("chunked input needs y: unsupervised searches take numpy input")
    client = default_client()
    scorer, names = _scorers(search.scoring)
    refit_metric = "score"
    if names is not None:
        search._check_refit_for_multimetric(names)
        refit_metric = search.refit
    X_arr = as_chunked(X)
    rows = tuple(int(c) for c in X_arr.chunks[0])
    y_arr = _align(y, rows, "y")
    X_arr = X_arr.rechunk((rows, *[(int(n),) for n in X_arr.shape[1:]]))
    X_arr, y_arr = client.persist([X_arr, y_arr]) if client is not None else \
        (X_arr.persist(), y_arr.persist())
    folds = _folds(search.cv, len(rows))
    search.n_splits_ = n_splits = len(folds)
    candidates = list(search._candidates())
    if not candidates:
        raise ValueError("No fits were performed. Was the CV iterator empty? "
                         "Were there no candidates?")
    parts = [(select_blocks(X_arr, tr), select_blocks(y_arr, tr), select_blocks(X_arr, te),
              select_blocks(y_arr, te)) for tr, te in folds]
    salt = uuid.uuid4().hex
    checkpoint = None if search.checkpoint is None else Checkpoint(search.checkpoint)
    prefixes = _Prefixes(client)
    jobs = []
    for c, cand in enumerate(candidates):
        for s in range(n_splits):
            ident = token(search.estimator, cand, X_arr.name, y_arr.name, folds[s],
                          repr(search.scoring), search.return_train_score, search.error_score)
            chain, final = _chain(search.estimator, cand, token(salt, s))
            jobs.append((c * n_splits + s, s, ident, chain, final))
            prefixes.users.update(i for i, _ in chain)
    jobs.sort(key=lambda job: (job[1], [i for i, _ in job[3]]))
    out: list = [None] * (len(candidates) * n_splits)
    search.n_prefix_fits_ = 0
    bar = SearchProgress(type(search).__name__, len(out), search.progress,
                         candidates=len(candidates), folds=n_splits)
    placed: tuple[int, list] = (-1, [])
    try:
        for index, s, ident, chain, final in jobs:
            stored = checkpoint.get(ident) if checkpoint is not None else None
            if stored is not None:
                out[index] = stored
                prefixes.release([i for i, _ in chain])
                bar.update(1)
                continue
            if placed[0] != s:  # jobs go fold by fold: the fold's views made once, then dropped
                placed = (s, list(client.persist(list(parts[s]))) if client is not None
                          else list(parts[s]))
            X_train, y_train, X_test, y_test = placed[1]
            source: tuple = (X_train, X_test, 0.0)
            try:
                for step_id, step in chain:
                    fitted = step_id in prefixes.stages
                    source = prefixes.stage(step_id, clone(step), source, y_train)
                    search.n_prefix_fits_ += not fitted
            except Exception:
                if search.error_score == "raise":
                    raise
                fill = {n: search.error_score for n in names} if names else search.error_score
                out[index] = {"fit_error": format_exc(), "test_scores": fill,
                              "fit_time": 0.0, "score_time": 0.0}
                if search.return_train_score:
                    out[index]["train_scores"] = fill
            else:
                out[index] = _evaluate(final, source[0], y_train, source[1], y_test, scorer,
                                       search.return_train_score, search.error_score,
                                       source[2])
            out[index]["n_test_samples"] = int(sum(parts[s][2].chunks[0]))
            prefixes.release([i for i, _ in chain])
            if checkpoint is not None:
                checkpoint.record(ident, out[index])
            bar.update(1)
    finally:
        bar.close()
        if checkpoint is not None:
            checkpoint.close()
    _warn_or_raise_about_fit_failures(out, search.error_score)
    results = search._format_results(candidates, n_splits, out)
    search.multimetric_ = names is not None
    search._checked_cv_orig = search.cv
    return search._finish(results, refit_metric, scorer, X_arr, y_arr, {})
