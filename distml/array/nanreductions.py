"""NaN-skipping reductions: ``nansum``, ``nanprod``, ``nanmin``, ``nanmax``, ``nanmean``,
``nanvar``, ``nanstd`` (``nanargmin``/``nanargmax`` live with the other arg-reductions).

They follow numpy: NaN is treated as absent, a slice without values sums to 0, multiplies
to 1, and has a NaN minimum, mean and variance.  Means and variances carry per-element
counts, since each output element may skip a different number of NaN.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

from distml.array.core import Array
from distml.array.reductions import (_check_out, _default_dtype, _extreme, _simple,
                                     reduction)

__all__ = ["nansum", "nanprod", "nanmin", "nanmax", "nanmean", "nanvar", "nanstd"]


def _quiet(func: Any, block: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``func`` without the warnings numpy gives for all-NaN slices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(block, **kwargs)


def _quiet_nanmin(block: np.ndarray, **kwargs: Any) -> np.ndarray:
    return _quiet(np.nanmin, block, **kwargs)


def _quiet_nanmax(block: np.ndarray, **kwargs: Any) -> np.ndarray:
    return _quiet(np.nanmax, block, **kwargs)


def nansum(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
           split_every: int | None = None, out: None = None) -> Array:
    """Sum over ``axis`` treating NaN as zero."""
    _check_out(out)
    dtype = _default_dtype(np.nansum, dtype, x)
    return _simple(x, np.nansum, np.add, axis, keepdims, dtype, split_every, "nansum", True)


def nanprod(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
            split_every: int | None = None, out: None = None) -> Array:
    """Product over ``axis`` treating NaN as one."""
    _check_out(out)
    dtype = _default_dtype(np.nanprod, dtype, x)
    return _simple(x, np.nanprod, np.multiply, axis, keepdims, dtype, split_every, "nanprod",
                   True)


def nanmin(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
           out: None = None) -> Array:
    """Minimum over ``axis`` ignoring NaN (NaN for an all-NaN slice)."""
    _check_out(out)
    return _extreme(x, _quiet_nanmin, np.fmin, axis, keepdims, split_every, "nanmin")


def nanmax(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
           out: None = None) -> Array:
    """Maximum over ``axis`` ignoring NaN (NaN for an all-NaN slice)."""
    _check_out(out)
    return _extreme(x, _quiet_nanmax, np.fmax, axis, keepdims, split_every, "nanmax")


def _float_data(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float64) if block.dtype.kind in "biu" else block


def _nan_sum_count_chunk(block: np.ndarray, axes: tuple[int, ...]) -> tuple:
    """Per output element: the number of non-NaN values and their sum."""
    data = _float_data(block)
    present = ~np.isnan(data)
    return (np.sum(present, axis=axes, keepdims=True),
            np.nansum(data, axis=axes, keepdims=True,
                      dtype=np.result_type(data.dtype, np.float64)))


def _nan_sum_count_combine(parts: list) -> tuple:
    return (functools.reduce(np.add, [p[0] for p in parts]),
            functools.reduce(np.add, [p[1] for p in parts]))


def _nan_mean_aggregate(partial: tuple) -> np.ndarray:
    n, total = partial
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _nan_moment_chunk(block: np.ndarray, axes: tuple[int, ...]) -> tuple:
    """Per output element: ``(count, mean, M2)`` of the non-NaN values (mean 0 if none)."""
    data = _float_data(block)
    present = ~np.isnan(data)
    n = np.sum(present, axis=axes, keepdims=True)
    total = np.nansum(data, axis=axes, keepdims=True, dtype=np.result_type(data.dtype,
                                                                           np.float64))
    mu = total / np.maximum(n, 1)
    dev = np.where(present, data - mu, 0)
    m2 = np.sum((dev * np.conj(dev)).real if np.iscomplexobj(dev) else dev * dev,
                axis=axes, keepdims=True)
    return n, mu, m2


def _nan_moment_combine(parts: list) -> tuple:
    """Chan et al.'s pairwise update with a count per element (some may be zero)."""
    n, mu, m2 = parts[0]
    for nb, mub, m2b in parts[1:]:
        total = n + nb
        safe = np.maximum(total, 1)
        delta = mub - mu
        mu = mu + delta * (nb / safe)
        dd = (delta * np.conj(delta)).real if np.iscomplexobj(delta) else delta * delta
        m2 = m2 + m2b + dd * (n * nb / safe)
        n = total
    return n, mu, m2


def _nan_var_aggregate(ddof: int, partial: tuple) -> np.ndarray:
    n, _, m2 = partial
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n - ddof > 0, m2 / np.maximum(n - ddof, 1), np.nan)


def _nan_std_aggregate(ddof: int, partial: tuple) -> np.ndarray:
    return np.sqrt(_nan_var_aggregate(ddof, partial))


def nanmean(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
            split_every: int | None = None, out: None = None) -> Array:
    """Mean over ``axis`` of the non-NaN values (NaN for an all-NaN slice)."""
    _check_out(out)
    dtype = _default_dtype(np.nanmean, dtype, x)
    return reduction(x, _nan_sum_count_chunk, _nan_sum_count_combine, _nan_mean_aggregate,
                     axis, keepdims, dtype, "nanmean", split_every)


def nanvar(x: Array, axis: Any = None, dtype: Any = None, ddof: int = 0,
           keepdims: bool = False, split_every: int | None = None, out: None = None) -> Array:
    """Variance over ``axis`` of the non-NaN values (numerically stable merging)."""
    _check_out(out)
    dtype = _default_dtype(np.nanvar, dtype, x)
    return reduction(x, _nan_moment_chunk, _nan_moment_combine,
                     functools.partial(_nan_var_aggregate, int(ddof)), axis, keepdims, dtype,
                     "nanvar", split_every)


def nanstd(x: Array, axis: Any = None, dtype: Any = None, ddof: int = 0,
           keepdims: bool = False, split_every: int | None = None, out: None = None) -> Array:
    """Standard deviation over ``axis`` of the non-NaN values."""
    _check_out(out)
    dtype = _default_dtype(np.nanstd, dtype, x)
    return reduction(x, _nan_moment_chunk, _nan_moment_combine,
                     functools.partial(_nan_std_aggregate, int(ddof)), axis, keepdims, dtype,
                     "nanstd", split_every)
