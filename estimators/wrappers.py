"""Meta-estimators that bring any scikit-learn estimator to chunked data.

:class:`ParallelPostFit` fits its estimator as usual, in this process, and then predicts,
transforms and scores chunked input block by block on the cluster.  :class:`Incremental`
trains an estimator that has ``partial_fit`` one row block at a time, sending the model to
the worker that holds each block, so the data never moves.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier, is_regressor
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from distml.estimators._data import (RowBlocks, _on_worker, apply_rows, as_chunked, is_chunked,
                                     row_blocks)

__all__ = ["Incremental", "ParallelPostFit"]


def _local(obj: Any) -> Any:
    """``obj`` as an in-memory array when it is chunked, else unchanged."""
    return np.asarray(as_chunked(obj).compute()) if is_chunked(obj) else obj


def _call(X: np.ndarray, estimator: BaseEstimator, method: str) -> np.ndarray:
    return np.asarray(getattr(estimator, method)(X))


def _estimator_has(method: str) -> Callable[[Any], bool]:
    """For ``available_if``: the fitted (else the given) estimator has ``method``."""
    def check(self: Any) -> bool:
        inner = self.estimator_ if hasattr(self, "estimator_") else self.estimator
        getattr(inner, method)  # raises AttributeError when absent
        return True
    return check


def _score_stats(X: np.ndarray, y: np.ndarray, w: Any, estimator: BaseEstimator,
                 classifier: bool) -> np.ndarray:
    """Additive statistics of one block's score: weighted ``[count, correct]`` for
    classifiers; ``[count, sum y, sum y**2, sum residual**2]`` per output for regressors."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    pred = np.asarray(estimator.predict(X))
    if classifier:
        return np.array([w.sum(), w @ (pred == np.asarray(y))])
    y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    res = y2 - pred.reshape(len(y), -1)
    return np.concatenate([[w.sum()], w @ y2, w @ y2 ** 2, w @ res ** 2])


def _score_from_stats(stats: np.ndarray, classifier: bool) -> float:
    if classifier:
        return float(stats[1] / stats[0])
    total, rest = stats[0], stats[1:].reshape(3, -1)
    sy, syy, sres = rest
    tss = syy - sy ** 2 / total
    r2 = np.where(tss > 0, 1.0 - sres / np.where(tss > 0, tss, 1.0),
                  np.where(sres == 0, 1.0, 0.0))
    return float(np.mean(r2))


class ParallelPostFit(MetaEstimatorMixin, BaseEstimator):
    """Fit ``estimator`` in this process; predict, transform and score block-parallel.

    ``fit`` trains a clone of ``estimator`` (``estimator_``) in memory: chunked training
    data is computed here first, so it is meant for training sets that fit in memory (see
    :class:`Incremental` otherwise).  ``predict``, ``predict_proba``,
    ``predict_log_proba``, ``decision_function`` and ``transform`` map the fitted estimator
    over the row blocks of a chunked ``X`` (a chunked result, rows chunked like ``X``) and
    call it directly on numpy input.  ``score`` reduces per-block accuracy or R^2 statistics
    for classifiers and regressors, and scores in memory otherwise.
    """

    def __init__(self, estimator: BaseEstimator) -> None:
        self.estimator = estimator

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.transformer_tags = inner.transformer_tags
        tags.target_tags = inner.target_tags
        tags.input_tags = inner.input_tags
        return tags

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> "ParallelPostFit":
        """Fit a clone of ``estimator`` on ``(X, y)`` in this process."""
        params = {k: _local(v) for k, v in fit_params.items()}
        self.estimator_ = clone(self.estimator).fit(_local(X), _local(y), **params)
        return self

    @property
    def n_features_in_(self) -> int:
        """Number of features seen by the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.n_features_in_

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of the fitted classifier."""
        check_is_fitted(self)
        return self.estimator_.classes_

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "estimator_")

    def _apply(self, method: str, X: Any) -> Any:
        check_is_fitted(self)
        if not is_chunked(X):
            return getattr(self.estimator_, method)(X)
        X = as_chunked(X)
        sample = _call(np.asarray(X[:1].compute()), self.estimator_, method)
        n_out = None if sample.ndim == 1 else sample.shape[1]
        return apply_rows(_call, X, self.estimator_, method, n_out=n_out, dtype=sample.dtype)

    @available_if(_estimator_has("predict"))
    def predict(self, X: Any) -> Any:
        """Predictions of the fitted estimator, block by block for chunked ``X``."""
        return self._apply("predict", X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, block by block for chunked ``X``."""
        return self._apply("predict_proba", X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        """Log class probabilities, block by block for chunked ``X``."""
        return self._apply("predict_log_proba", X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """Decision function, block by block for chunked ``X``."""
        return self._apply("decision_function", X)

    @available_if(_estimator_has("transform"))
    def transform(self, X: Any) -> Any:
        """Transformed ``X``, block by block for chunked ``X``."""
        return self._apply("transform", X)

    @available_if(_estimator_has("transform"))
    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """:meth:`fit`, then :meth:`transform` of ``X``."""
        return self.fit(X, y, **fit_params).transform(X)

    @available_if(_estimator_has("score"))
    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """The estimator's score; reduced block by block for chunked classifier/regressor
        input (accuracy, or R^2 averaged over outputs)."""
        check_is_fitted(self)
        classifier = is_classifier(self.estimator_)
        if not is_chunked(X) and not is_chunked(y):
            kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
            return self.estimator_.score(X, y, **kwargs)
        if not (classifier or is_regressor(self.estimator_)):
            kwargs = {} if sample_weight is None else {"sample_weight": _local(sample_weight)}
            return self.estimator_.score(_local(X), _local(y), **kwargs)
        blocks = row_blocks(X, y, sample_weight)
        parts = blocks.map(_score_stats, self.estimator_, classifier)
        values = blocks.client.gather(parts) if blocks.client is not None else parts
        return _score_from_stats(np.sum(values, axis=0), classifier)


def _partial_fit_block(model: BaseEstimator, X: np.ndarray, y: Any, w: Any,
                       fit_params: dict[str, Any]) -> BaseEstimator:
    """A copy of ``model`` after ``partial_fit`` on one block (the input stays untouched, so
    a retried task starts from the same state)."""
    model = copy.deepcopy(model)
    kwargs = dict(fit_params)
    if w is not None:
        kwargs["sample_weight"] = w
    return model.partial_fit(X, **kwargs) if y is None else model.partial_fit(X, y, **kwargs)


def _block_classes(X: Any, y: Any, w: Any) -> np.ndarray:
    return np.unique(np.ravel(np.asarray(y)))


class Incremental(ParallelPostFit):
    """Train an estimator with ``partial_fit`` one row block at a time, where the blocks live.

    Each epoch visits the row blocks of ``X``/``y`` (and ``sample_weight``, chunked like
    ``X``) once, in a random order when ``shuffle_blocks`` (seeded by ``random_state``),
    else in order.  On a cluster every ``partial_fit`` call is a task that receives the model
    produced by the previous one and runs where its block is held: the model travels, the
    data stays.  Numpy input is one block trained in this process.  For classifiers the
    ``classes`` argument is forwarded, and computed once from ``y`` (a reduction over the
    blocks) when not given on the first call.  Prediction and scoring are those of
    :class:`ParallelPostFit`; the trained model is ``estimator_``.
    """

    def __init__(self, estimator: BaseEstimator, *, shuffle_blocks: bool = True,
                 random_state: Any = None, n_epochs: int = 1) -> None:
        self.estimator = estimator
        self.shuffle_blocks = shuffle_blocks
        self.random_state = random_state
        self.n_epochs = n_epochs

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> "Incremental":
        """Train a fresh clone of ``estimator`` for ``n_epochs`` passes over the blocks."""
        if not isinstance(self.n_epochs, int) or self.n_epochs < 1:
            raise ValueError(f"n_epochs must be a positive integer, got {self.n_epochs!r}")
        self._rng = check_random_state(self.random_state)
        return self._train(clone(self.estimator), X, y, fit_params, self.n_epochs)

    def partial_fit(self, X: Any, y: Any = None, **fit_params: Any) -> "Incremental":
        """One more pass over the blocks, continuing from ``estimator_`` if fitted."""
        if not hasattr(self, "estimator_"):
            self._rng = check_random_state(self.random_state)
            return self._train(clone(self.estimator), X, y, fit_params, 1)
        return self._train(self.estimator_, X, y, fit_params, 1)

    def _train(self, model: BaseEstimator, X: Any, y: Any, fit_params: dict[str, Any],
               epochs: int) -> "Incremental":
        params = dict(fit_params)
        sample_weight = params.pop("sample_weight", None)
        blocks = (row_blocks(X, y, sample_weight)
                  if any(is_chunked(a) for a in (X, y, sample_weight)) else None)
        parts = blocks.parts if blocks is not None else [(X, y, sample_weight)]
        if is_classifier(model) and "classes" not in params and not hasattr(model, "classes_"):
            if y is None:
                raise ValueError(f"{type(model).__name__} requires y to be passed, but the "
                                 "target y is None.")
            params["classes"] = (blocks.reduce(_block_classes, combine=np.union1d)
                                 if blocks is not None else _block_classes(*parts[0]))
        order = [b for _ in range(epochs) for b in
                 (self._rng.permutation(len(parts)) if self.shuffle_blocks
                  else range(len(parts)))]
        self.estimator_ = (self._chain_remote(blocks, model, order, params)
                           if blocks is not None and blocks.client is not None
                           else self._chain_local(parts, model, order, params))
        return self

    @staticmethod
    def _chain_local(parts: list[tuple], model: BaseEstimator, order: list[int],
                     params: dict[str, Any]) -> BaseEstimator:
        for b in order:
            model = _partial_fit_block(model, *parts[b], params)
        return model

    @staticmethod
    def _chain_remote(blocks: RowBlocks, model: BaseEstimator, order: list[int],
                      params: dict[str, Any]) -> BaseEstimator:
        """Submit the whole chain at once: task ``k`` takes the model future of task
        ``k - 1`` and the block futures, so the scheduler runs it where the block is."""
        client = blocks.client
        chain: list = []
        current: Any = model
        for b in order:
            current = client.submit(_on_worker, _partial_fit_block, current, *blocks.parts[b],
                                    params, pure=False)
            chain.append(current)
        return client.gather(chain[-1]) if chain else model
