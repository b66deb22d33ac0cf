"""GridSearchCV and RandomizedSearchCV on the cluster, with scikit-learn's API and results.

Both subclass scikit-learn's searches, so parameter checks, scorers, ``refit`` rules, delegation
(``predict``, ``score``, ...) and the layout of ``cv_results_`` are scikit-learn's own.  What
differs is how candidates are evaluated: ``X`` and ``y`` are scattered once, every fold's split
is one task, and a pipeline prefix shared by several candidates is fitted once per fold (see
:mod:`._graph`); the graph goes to the cluster in bounded waves (:mod:`._run`).  Without an open
client the same plan runs in this process.  Chunked input (``distml.array`` arrays, tables) is
searched with folds along block boundaries (:mod:`._chunked`).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import logging
import os
import time
import uuid
from typing import Any, Callable

import numpy as np
import sklearn.model_selection as skms
from sklearn.base import clone, is_classifier
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.model_selection._validation import (_insert_error_scores,
                                                 _warn_or_raise_about_fit_failures)
from sklearn.utils import indexable
from sklearn.utils.validation import _check_method_params

from distml.estimators._data import is_chunked
from distml.estimators.model_selection._checkpoint import Checkpoint
from distml.estimators.model_selection._graph import SearchPlan, configured, reissue, token
from distml.estimators.model_selection._progress import SearchProgress
from distml.estimators.model_selection._refit import EarlyRefit
from distml.estimators.model_selection._run import default_batch_size, run_plan

logger = logging.getLogger(__name__)

__all__ = ["GridSearchCV", "RandomizedSearchCV"]


def _client() -> Any:
    from distml import default_client
    return default_client()


def data_token(*arrays: Any) -> str:
    """A hash of the search's data (numpy buffers hashed with xxh3; other objects pickled)."""
    import xxhash
    h = xxhash.xxh3_128()
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype != object:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)
        else:
            h.update(token(a).encode())
    return h.hexdigest()


class _DistributedSearch(metaclass=ABCMeta):
    """The ``fit`` shared by the searches: scikit-learn's bookkeeping, distml's evaluation."""

    checkpoint: Any
    progress: Any
    wave_size: Any

    @abstractmethod
    def _candidates(self) -> list[dict]:
        """Each search class defines its candidates."""

    def fit(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Evaluate every candidate on every fold, then refit the best one (see scikit-learn's
        ``fit``; ``groups`` and fit parameters are accepted the same way)."""
        self._validate_params()
        if is_chunked(X) or is_chunked(y):
            from distml.estimators.model_selection._chunked import fit_chunked
            return fit_chunked(self, X, y, **params)
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        routed = self._get_routed_params_for_fit(params)
        self._checked_cv_orig = cv = check_cv(self.cv, y,
                                              classifier=is_classifier(self.estimator))
        self.n_splits_ = cv.get_n_splits(X, y, **routed.splitter.split)
        splits = list(cv.split(X, y, **routed.splitter.split))
        if len(splits) != self.n_splits_:
            raise ValueError("cv.split and cv.get_n_splits return inconsistent results. "
                             f"Expected {self.n_splits_} splits, got {len(splits)}")
        candidates = list(self._candidates())
        client = _client()
        data = (X, y) if client is None else tuple(client.scatter([X, y], broadcast=True)) \
            if y is not None else (client.scatter(X, broadcast=True), None)
        refit = None if client is None else EarlyRefit(
            client, self.estimator, candidates, len(splits),
            self.refit if isinstance(self.refit, str) else refit_metric, *data,
            routed.estimator.fit)
        early = refit is not None and self.refit and not callable(self.refit)
        out = self._evaluate(X, y, data, client, candidates, splits, scorers, routed,
                             on_idle=refit.start if early else None)
        results = self._format_results(candidates, self.n_splits_, out)
        self.multimetric_ = isinstance(out[0]["test_scores"], dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(out[0]["test_scores"])
            refit_metric = self.refit
        return self._finish(results, refit_metric, scorers, X, y, routed.estimator.fit,
                            on_cluster=refit)

    def _finish(self, results: dict, refit_metric: str, scorers: Any, X: Any, y: Any,
                fit_params: dict, on_cluster: EarlyRefit | None = None) -> Any:
        """Best candidate, refit and the fitted attributes, as scikit-learn sets them.  With
        ``on_cluster`` the refit runs on the cluster, as the candidates' fits did (perhaps
        started there already); otherwise here."""
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            self.best_estimator_ = configured(self.estimator, self.best_params_)
            if on_cluster is not None:
                self.best_estimator_, self.refit_time_, warned = on_cluster.result(
                    self.best_index_)
                reissue(warned)
            else:
                start = time.time()
                if y is not None:
                    self.best_estimator_.fit(X, y, **fit_params)
                else:
                    self.best_estimator_.fit(X, **fit_params)
                self.refit_time_ = time.time() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        self.scorer_ = scorers._scorers if isinstance(scorers, _MultimetricScorer) else scorers
        self.cv_results_ = results
        return self

    def _evaluate(self, X: Any, y: Any, data: tuple, client: Any, candidates: list[dict],
                  splits: list, scorers: Any, routed: Any,
                  on_idle: Callable[[list], None] | None = None) -> list[dict]:
        """One result dict per (candidate, fold), candidate-major, as scikit-learn's.
        ``on_idle(results so far)`` is called once, if a worker thread runs out of work before
        the last result arrives."""
        n_splits = len(splits)
        if not candidates or not n_splits:
            raise ValueError("No fits were performed. Was the CV iterator empty? "
                             "Were there no candidates?")
        if self.verbose > 0:
            print(f"Fitting {n_splits} folds for each of {len(candidates)} candidates, "
                  f"totalling {len(candidates) * n_splits} fits")
        score_names = list(scorers._scorers) if isinstance(scorers, _MultimetricScorer) else None
        # a callable scorer may look at the whole pipeline: then candidates are not split up
        share = not (callable(self.scoring) and not hasattr(self.scoring, "_score_func"))
        plan = SearchPlan(self.estimator, routed.estimator.fit, scorers, score_names,
                          self.return_train_score, self.error_score, share,
                          salt=uuid.uuid4().hex)
        checkpoint = None if self.checkpoint is None else Checkpoint(self.checkpoint)
        data_id = data_token(X, y) if checkpoint is not None else ""
        out: list[dict | None] = [None] * (len(candidates) * n_splits)
        wanted: dict[str, list[tuple[int, str]]] = {}
        folds = [None] * n_splits
        for c, cand in enumerate(candidates):
            for s, (train, test) in enumerate(splits):
                ident = token(self.estimator, cand, data_id, train, test, repr(self.scoring),
                              self.return_train_score, self.error_score) if checkpoint else ""
                stored = checkpoint.get(ident) if checkpoint else None
                if stored is not None:
                    out[c * n_splits + s] = stored
                    continue
                if folds[s] is None:
                    folds[s] = plan.add_fold(s, data[0], data[1], train, test,
                                             routed.scorer.score)
                final = plan.add_candidate(cand, folds[s])
                wanted.setdefault(final, []).append((c * n_splits + s, ident))
        bar = SearchProgress(type(self).__name__, len(out), self.progress,
                             candidates=len(candidates), folds=n_splits, tasks=len(plan.nodes),
                             prefix_fits=plan.prefix_fits)
        bar.update(len(out) - sum(len(v) for v in wanted.values()))
        self.n_prefix_fits_ = plan.prefix_fits

        def on_result(key: str, result: dict) -> None:
            reissue(result.pop("warnings", []))
            for index, ident in wanted[key]:
                out[index] = dict(result)
                if checkpoint is not None:
                    checkpoint.record(ident, result)
            bar.update(len(wanted[key]))

        threads = 1 if client is None else sum(client.nthreads().values())
        try:
            run_plan(plan, list(wanted), on_result, client,
                     wave_size=self.wave_size or _default_wave(client, threads),
                     batch_size=default_batch_size(client, len(wanted), threads),
                     on_idle=None if on_idle is None else (lambda: on_idle(out)), threads=threads)
        finally:
            if checkpoint is not None:
                checkpoint.close()
            bar.close()
        _warn_or_raise_about_fit_failures(out, self.error_score)
        if callable(self.scoring):
            _insert_error_scores(out, self.error_score)
        return out


def _default_wave(client: Any, threads: int) -> int:
    """Candidate-folds per wave: several per worker thread, at least 32."""
    if client is None:
        return 1
    return max(32, 8 * threads)


_EXTRA_DOC = """
    distml additions:

    checkpoint : str or path, default None
        A JSON-lines file where every scored candidate-fold is recorded as it arrives; a rerun
        with the same arguments skips the ones already there.
    progress : bool or None, default None
        Show a progress bar over candidate-folds (None: when running interactively).
    wave_size : int or None, default None
        Candidate-folds submitted to the cluster per wave (None: 8 per worker thread, >= 32).
"""


class GridSearchCV(_DistributedSearch, skms.GridSearchCV):
    __doc__ = ("Exhaustive search over a parameter grid, evaluated on the distml cluster; "
               "scikit-learn's ``GridSearchCV`` API and results.\n" + _EXTRA_DOC)

    _parameter_constraints: dict = {
        **skms.GridSearchCV._parameter_constraints,
        "checkpoint": [str, os.PathLike, None],
        "progress": ["boolean", None],
        "wave_size": [int, None],
    }

    def __init__(self, estimator: Any, param_grid: dict | list, *, scoring: Any = None,
                 n_jobs: int | None = None, refit: bool | str | Callable = True, cv: Any = None,
                 verbose: int = 0, pre_dispatch: Any = "2*n_jobs", error_score: Any = np.nan,
                 return_train_score: bool = False, checkpoint: Any = None,
                 progress: bool | None = None, wave_size: int | None = None) -> None:
        super().__init__(estimator, param_grid, scoring=scoring, n_jobs=n_jobs, refit=refit,
                         cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
                         error_score=error_score, return_train_score=return_train_score)
        self.checkpoint = checkpoint
        self.progress = progress
        self.wave_size = wave_size

    def _candidates(self) -> list[dict]:
        return list(ParameterGrid(self.param_grid))


class RandomizedSearchCV(_DistributedSearch, skms.RandomizedSearchCV):
    __doc__ = ("Search over sampled parameter settings, evaluated on the distml cluster; "
               "scikit-learn's ``RandomizedSearchCV`` API and results.\n" + _EXTRA_DOC)

    _parameter_constraints: dict = {
        **skms.RandomizedSearchCV._parameter_constraints,
        "checkpoint": [str, os.PathLike, None],
        "progress": ["boolean", None],
        "wave_size": [int, None],
    }

    def __init__(self, estimator: Any, param_distributions: dict | list, *, n_iter: int = 10,
                 scoring: Any = None, n_jobs: int | None = None,
                 refit: bool | str | Callable = True, cv: Any = None, verbose: int = 0,
                 pre_dispatch: Any = "2*n_jobs", random_state: Any = None,
                 error_score: Any = np.nan, return_train_score: bool = False,
                 checkpoint: Any = None, progress: bool | None = None,
                 wave_size: int | None = None) -> None:
        super().__init__(estimator, param_distributions, n_iter=n_iter, scoring=scoring,
                         n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, random_state=random_state,
                         error_score=error_score, return_train_score=return_train_score)
        self.checkpoint = checkpoint
        self.progress = progress
        self.wave_size = wave_size

    def _candidates(self) -> list[dict]:
        return list(ParameterSampler(self.param_distributions, self.n_iter,
                                     random_state=self.random_state))
