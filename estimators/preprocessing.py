"""Feature scaling fitted in one pass of tree reductions over row blocks.

``fit`` reduces every block to per-column summaries (weighted counts, means and squared
deviations, or minima and maxima; NaNs are ignored like scikit-learn does) merged pairwise;
``transform`` and ``inverse_transform`` work block by block, returning a chunked Array for
chunked input and numpy for numpy input.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from distml.estimators._data import (apply_rows, as_chunked, check_sample_weight,
                                     check_weight_sum, is_chunked, row_blocks)

__all__ = ["MinMaxScaler", "StandardScaler"]


def _validate(est: BaseEstimator, X: Any, reset: bool) -> Any:
    """Numpy input through scikit-learn's checks (NaN allowed, inf rejected); chunked input
    checked for dimensions and feature count (its values are checked block by block)."""
    if not is_chunked(X):
        return validate_data(est, X, reset=reset, dtype=[np.float64, np.float32],
                             ensure_all_finite="allow-nan")
    arr = as_chunked(X)
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead.")
    arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    n_features = int(arr.shape[1])
    if reset:
        est.n_features_in_ = n_features
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif n_features != est.n_features_in_:
        raise ValueError(f"X has {n_features} features, but {type(est).__name__} is "
                         f"expecting {est.n_features_in_} features as input.")
    return arr


def _check_inf(X: np.ndarray) -> None:
    if np.isinf(X).any():
        raise ValueError("Input X contains infinity or a value too large for dtype('float64').")


# ---------------------------------------------------------------------- block summaries
def _moments(X: np.ndarray, w: Any) -> tuple:
    """Per column: weight of non-NaN entries, their weighted mean and squared deviations."""
    _check_inf(X)
    X = X.astype(np.float64, copy=False)
    present = ~np.isnan(X)
    W = present * (1.0 if w is None else np.asarray(w, dtype=np.float64)[:, None])
    Xz = np.where(present, X, 0.0)
    n = W.sum(axis=0)
    safe = np.where(n > 0, n, 1.0)
    mean = (W * Xz).sum(axis=0) / safe
    m2 = (W * (Xz - mean) ** 2).sum(axis=0)
    rows = np.count_nonzero(present, axis=0)
    return n, mean, m2, rows


def _merge_moments(a: tuple, b: tuple) -> tuple:
    """Pairwise (Chan et al.) merge of :func:`_moments` results, column by column."""
    na, ma, sa, ra = a
    nb, mb, sb, rb = b
    n = na + nb
    safe = np.where(n > 0, n, 1.0)
    delta = mb - ma
    return n, ma + delta * nb / safe, sa + sb + delta ** 2 * na * nb / safe, ra + rb


def _extrema(X: np.ndarray) -> tuple:
    _check_inf(X)
    present = ~np.isnan(X)
    lo = np.where(present, X, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(present, X, -np.inf).max(axis=0, initial=-np.inf)
    return lo, hi, np.count_nonzero(present, axis=0)


def _merge_extrema(a: tuple, b: tuple) -> tuple:
    return np.minimum(a[0], b[0]), np.maximum(a[1], b[1]), a[2] + b[2]


def _samples_seen(counts: np.ndarray) -> Any:
    """A scalar when every column saw the same count (of rows, or of weight), else one count
    per column."""
    if counts.size and np.all(counts == counts[0]):
        return counts[0].item()
    return counts


def _safe_scale(scale: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """``scale`` with 1.0 where a feature is (numerically) constant, so it is left as is."""
    out = scale.copy()
    out[constant | (scale == 0)] = 1.0
    return out


# ---------------------------------------------------------------------- block transforms
def _affine(X: np.ndarray, shift: Any, factor: Any) -> np.ndarray:
    out = np.array(X, dtype=np.result_type(X.dtype, np.float32), copy=True)
    if shift is not None:
        out -= shift
    if factor is not None:
        out *= factor
    return out


def _affine_clip(X: np.ndarray, factor: np.ndarray, offset: np.ndarray,
                 bounds: tuple | None) -> np.ndarray:
    out = np.array(X, dtype=np.result_type(X.dtype, np.float32), copy=True)
    out *= factor
    out += offset
    if bounds is not None:
        np.clip(out, bounds[0], bounds[1], out=out)
    return out


class StandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features to zero mean and unit variance (``(x - mean_) / scale_``).

    Transforms always return new arrays; NaNs are ignored when fitting and kept as NaN.
    """

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "StandardScaler":
        """Compute the per-feature mean and variance in one reduction over the row blocks."""
        X = _validate(self, X, reset=True)
        blocks = row_blocks(X, check_sample_weight(sample_weight, int(X.shape[0])))
        n, mean, m2, rows = blocks.reduce(_moments, combine=_merge_moments)
        if sample_weight is not None:
            check_weight_sum(n)
        self.n_samples_seen_ = _samples_seen(rows if sample_weight is None else n)
        safe = np.where(n > 0, n, 1.0)
        var = np.where(n > 0, m2 / safe, np.nan)
        mean = np.where(n > 0, mean, np.nan)
        self.mean_ = mean if (self.with_mean or self.with_std) else None
        if self.with_std:
            eps = np.finfo(np.float64).eps
            constant = var <= (eps * (1.0 + np.abs(np.nan_to_num(mean)))) ** 2 * rows
            self.var_ = var
            self.scale_ = _safe_scale(np.sqrt(var), constant)
        else:
            self.var_ = None
            self.scale_ = None
        return self

    def _params(self) -> tuple:
        shift = self.mean_ if self.with_mean else None
        return shift, (None if self.scale_ is None else 1.0 / self.scale_)

    def transform(self, X: Any) -> Any:
        """Centre and scale ``X`` block by block."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        shift, factor = self._params()
        return apply_rows(_affine, X, shift, factor, n_out=self.n_features_in_)

    def inverse_transform(self, X: Any) -> Any:
        """Undo :meth:`transform` block by block."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        shift, _ = self._params()
        factor = np.ones(self.n_features_in_) if self.scale_ is None else self.scale_
        offset = np.zeros(self.n_features_in_) if shift is None else shift
        return apply_rows(_affine_clip, X, factor, offset, None, n_out=self.n_features_in_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class MinMaxScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each feature to ``feature_range`` using its minimum and maximum.

    Transforms always return new arrays; NaNs are ignored when fitting and kept as NaN.
    """

    def __init__(self, feature_range: tuple = (0, 1), *, clip: bool = False) -> None:
        self.feature_range = feature_range
        self.clip = clip

    def fit(self, X: Any, y: Any = None) -> "MinMaxScaler":
        """Compute the per-feature minimum and maximum in one reduction over the row blocks."""
        lo_out, hi_out = self._range()
        X = _validate(self, X, reset=True)
        blocks = row_blocks(X)
        lo, hi, rows = blocks.reduce(_extrema, combine=_merge_extrema)
        empty = rows == 0
        lo, hi = np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)
        self.n_samples_seen_ = blocks.n_samples
        self.data_min_, self.data_max_, self.data_range_ = lo, hi, hi - lo
        self.scale_ = (hi_out - lo_out) / _safe_scale(self.data_range_,
                                                      np.zeros(len(lo), dtype=bool))
        self.min_ = lo_out - lo * self.scale_
        return self

    def _range(self) -> tuple[float, float]:
        rng = self.feature_range
        if (not isinstance(rng, (tuple, list)) or len(rng) != 2
                or not all(isinstance(v, numbers.Real) for v in rng)):
            raise ValueError("The 'feature_range' parameter of MinMaxScaler must be a tuple of "
                             f"two numbers. Got {rng!r} instead.")
        if rng[0] >= rng[1]:
            raise ValueError("Minimum of desired feature range must be smaller than maximum. "
                             f"Got {tuple(rng)}.")
        return float(rng[0]), float(rng[1])

    def transform(self, X: Any) -> Any:
        """Scale ``X`` block by block (clipped to ``feature_range`` when ``clip``)."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        bounds = tuple(self.feature_range) if self.clip else None
        return apply_rows(_affine_clip, X, self.scale_, self.min_, bounds,
                          n_out=self.n_features_in_)

    def inverse_transform(self, X: Any) -> Any:
        """Undo :meth:`transform` block by block."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        return apply_rows(_affine, X, self.min_, 1.0 / self.scale_, n_out=self.n_features_in_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
