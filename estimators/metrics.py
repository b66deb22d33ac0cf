"""Metrics on numpy or chunked arrays, computed as tree sums over aligned row blocks.

Numpy-only input goes to scikit-learn's function of the same name; chunked input (a
``distml.array.Array`` or a table) is reduced block by block on the workers, so only a
few numbers per block reach the client.  Values match scikit-learn's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn.metrics

from distml.estimators._data import is_chunked, row_blocks

__all__ = ["accuracy_score", "log_loss", "mean_squared_error", "r2_score"]


def _numpy_only(*arrays: Any) -> bool:
    return not any(is_chunked(a) for a in arrays if a is not None)


def _weights(w: Any, n: int) -> np.ndarray:
    return np.ones(n) if w is None else np.asarray(w, dtype=np.float64)


def _as_2d(y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1).astype(np.float64, copy=False)


# ---------------------------------------------------------------------- block summaries
def _accuracy_block(y_true: np.ndarray, y_pred: np.ndarray, w: Any) -> np.ndarray:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != p.ndim:
        t, p = t.ravel(), p.ravel()
    hit = (t == p) if t.ndim == 1 else np.all(t == p, axis=1)
    sw = _weights(w, len(hit))
    return np.array([float(sw @ hit), float(sw.sum())])


def _labels_block(y_true: np.ndarray, y_pred: np.ndarray, w: Any) -> np.ndarray:
    return np.unique(np.ravel(y_true))


def _log_loss_block(y_true: np.ndarray, y_pred: np.ndarray, w: Any,
                    labels: np.ndarray) -> np.ndarray:
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        p = p.reshape(-1)
        p = np.column_stack([1.0 - p, p])
    if p.shape[1] != len(labels):
        raise ValueError(f"y_true and y_pred contain different number of classes "
                         f"{len(labels)}, {p.shape[1]}. Please provide the true labels "
                         "explicitly through the labels argument. Classes found in y_true: "
                         f"{labels}")
    t = np.ravel(y_true)
    codes = np.searchsorted(labels, t)
    if np.any(codes >= len(labels)) or np.any(labels[np.minimum(codes, len(labels) - 1)] != t):
        raise ValueError("y_true contains values not in labels")
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    picked = p[np.arange(len(t)), codes] / p.sum(axis=1)
    sw = _weights(w, len(t))
    return np.array([float(-(sw @ np.log(picked))), float(sw.sum())])


def _squared_error_block(y_true: np.ndarray, y_pred: np.ndarray, w: Any) -> tuple:
    t, p = _as_2d(y_true), _as_2d(y_pred)
    sw = _weights(w, len(t))
    return float(sw.sum()), sw @ (t - p) ** 2


def _add_pairs(a: tuple, b: tuple) -> tuple:
    return a[0] + b[0], a[1] + b[1]


def _r2_block(y_true: np.ndarray, y_pred: np.ndarray, w: Any) -> tuple:
    """Weight sum, weighted mean and squared deviations of ``y_true``; squared errors."""
    t, p = _as_2d(y_true), _as_2d(y_pred)
    sw = _weights(w, len(t))
    n = float(sw.sum())
    mean = sw @ t / n if n > 0 else np.zeros(t.shape[1])
    return n, mean, sw @ (t - mean) ** 2, sw @ (t - p) ** 2


def _merge_r2(a: tuple, b: tuple) -> tuple:
    na, ma, sa, ea = a
    nb, mb, sb, eb = b
    n = na + nb
    if n == 0:
        return a
    d = mb - ma
    return n, ma + d * nb / n, sa + sb + d ** 2 * na * nb / n, ea + eb


def _aggregate(values: np.ndarray, multioutput: Any, weights: np.ndarray | None = None) -> Any:
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return values
        if multioutput == "uniform_average":
            return float(np.mean(values))
        if multioutput == "variance_weighted" and weights is not None:
            return float(np.average(values, weights=weights)) if weights.sum() else 1.0
        allowed = ("raw_values", "uniform_average") + (
            ("variance_weighted",) if weights is not None else ())
        raise ValueError(f"Allowed 'multioutput' string values are {allowed}. You provided "
                         f"multioutput={multioutput!r}.")
    return float(np.average(values, weights=np.asarray(multioutput, dtype=np.float64)))


# ---------------------------------------------------------------------- public metrics
def accuracy_score(y_true: Any, y_pred: Any, *, normalize: bool = True,
                   sample_weight: Any = None) -> float:
    """Fraction (or, with ``normalize=False``, weighted count) of exactly matching labels."""
    if _numpy_only(y_true, y_pred, sample_weight):
        return float(sklearn.metrics.accuracy_score(y_true, y_pred, normalize=normalize,
                                                    sample_weight=sample_weight))
    hits, total = row_blocks(y_true, y_pred, sample_weight).reduce(_accuracy_block)
    return float(hits / total) if normalize else float(hits)


def log_loss(y_true: Any, y_pred: Any, *, normalize: bool = True, sample_weight: Any = None,
             labels: Any = None) -> float:
    """Cross-entropy of predicted probabilities ``y_pred`` (columns in sorted label order)."""
    if _numpy_only(y_true, y_pred, sample_weight):
        return float(sklearn.metrics.log_loss(y_true, y_pred, normalize=normalize,
                                              sample_weight=sample_weight, labels=labels))
    blocks = row_blocks(y_true, y_pred, sample_weight)
    if labels is None:
        labels = blocks.reduce(_labels_block, combine=np.union1d)
    labels = np.unique(np.asarray(labels))
    if len(labels) < 2:
        raise ValueError("The labels array needs to contain at least two labels for "
                         f"log_loss, got {labels}.")
    total, weight = blocks.reduce(_log_loss_block, labels)
    return float(total / weight) if normalize else float(total)


def mean_squared_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None,
                       multioutput: Any = "uniform_average") -> Any:
    """Weighted mean of squared errors, per output or averaged."""
    if _numpy_only(y_true, y_pred, sample_weight):
        return sklearn.metrics.mean_squared_error(y_true, y_pred, sample_weight=sample_weight,
                                                  multioutput=multioutput)
    weight, sse = row_blocks(y_true, y_pred, sample_weight).reduce(_squared_error_block,
                                                                  combine=_add_pairs)
    return _aggregate(sse / weight, multioutput)


def r2_score(y_true: Any, y_pred: Any, *, sample_weight: Any = None,
             multioutput: Any = "uniform_average") -> Any:
    """Coefficient of determination (1 for a perfect fit; a constant target gives 1 when
    predicted exactly, else 0, as scikit-learn does)."""
    if _numpy_only(y_true, y_pred, sample_weight):
        return sklearn.metrics.r2_score(y_true, y_pred, sample_weight=sample_weight,
                                        multioutput=multioutput)
    _, _, ss_tot, ss_res = row_blocks(y_true, y_pred, sample_weight).reduce(
        _r2_block, combine=_merge_r2)
    scores = np.ones_like(ss_tot)
    nonzero = ss_tot != 0
    scores[nonzero] = 1.0 - ss_res[nonzero] / ss_tot[nonzero]
    scores[~nonzero & (ss_res != 0)] = 0.0
    return _aggregate(scores, multioutput, weights=ss_tot)
