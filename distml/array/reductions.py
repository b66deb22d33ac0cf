"""Reductions as trees: reduce each block, combine a few partial results at a time, finish.

Every reduction is three functions: ``chunk`` turns a block into a partial result (with the
reduced axes kept, length 1), ``combine`` merges a list of partial results into one, and
``aggregate`` turns the last partial result into the answer.  Means carry ``(count, sum)``;
variances carry ``(count, mean, M2)`` and merge them with Chan et al.'s parallel formula, so
they stay accurate on data with a large offset.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from distml.array.chunks import known, offsets, tokenize
from distml.array.core import Array

__all__ = ["reduction", "sum", "prod", "mean", "var", "std", "min", "max", "any", "all",
           "argmin", "argmax", "nanargmin", "nanargmax", "normalize_axis"]

DEFAULT_SPLIT_EVERY = 4


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes; checks bounds."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"axis must be an int or tuple of ints, got {a!r}")
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(
                f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))


def _finish(aggregate: Callable, partial: Any, axis: tuple[int, ...],
            keepdims: bool, dtype: Any) -> np.ndarray:
    out = np.asarray(aggregate(partial)).astype(dtype, copy=False)
    return out if keepdims else out.squeeze(axis=axis)


def _combine_all(combine: Callable, parts: list) -> Any:
    return combine(parts)


def reduction(x: Array, chunk: Callable, combine: Callable, aggregate: Callable, axis: Any,
              keepdims: bool, dtype: Any, name: str, split_every: int | None = None,
              chunk_args: Callable[[tuple[int, ...]], tuple] | None = None) -> Array:
    """Build the tree reduction of ``x`` over ``axis`` (see the module docstring).

    ``chunk(block, axes, *chunk_args(block_index))`` runs on each block; ``combine`` merges
    up to about ``split_every`` partial results; ``aggregate`` finishes the last one.
    """
    axes = normalize_axis(axis, x.ndim)
    split_every = split_every or DEFAULT_SPLIT_EVERY
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    factor = builtins.max(2, round(split_every ** (1 / builtins.max(1, len(axes)))))
    dtype = np.dtype(dtype)
    token = tokenize(x, chunk, combine, aggregate, axes, keepdims, dtype, split_every,
                     [chunk_args(i) for i in itertools.product(*map(range, x.numblocks))]
                     if chunk_args else None)
    out_name = f"{name}-{token}"
    dsk: dict = {}
    level_name = f"{name}-chunk-{token}"
    for idx in itertools.product(*map(range, x.numblocks)):
        extra = chunk_args(idx) if chunk_args else ()
        dsk[(level_name, *idx)] = (chunk, (x.name, *idx), axes, *extra)
    grid = list(x.numblocks)
    level = 0
    while builtins.any(grid[a] > 1 for a in axes):
        level += 1
        new_name = f"{name}-combine{level}-{token}"
        new_grid = [math.ceil(n / factor) if a in axes else n for a, n in enumerate(grid)]
        for idx in itertools.product(*map(range, new_grid)):
            ranges = [range(i * factor, builtins.min((i + 1) * factor, grid[a]))
                      if a in axes else (i,) for a, i in enumerate(idx)]
            parts = [(level_name, *j) for j in itertools.product(*ranges)]
            dsk[(new_name, *idx)] = (_combine_all, combine, parts)
        grid, level_name = new_grid, new_name
    for idx in itertools.product(*map(range, grid)):
        out_idx = idx if keepdims else tuple(i for a, i in enumerate(idx) if a not in axes)
        dsk[(out_name, *out_idx)] = (_finish, aggregate, (level_name, *idx), axes,
                                     keepdims, dtype)
    chunks = tuple((1,) if a in axes else c for a, c in enumerate(x.chunks)
                   if keepdims or a not in axes)
    return Array({**x.dask, **dsk}, out_name, chunks, dtype)


def _check_out(out: Any) -> None:
    if out is not None:
        raise TypeError("out= is not supported for distml arrays")


def _default_dtype(func: Callable, dtype: Any, x: Array) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    with np.errstate(all="ignore"):
        return np.asarray(func(np.ones(1, dtype=x.dtype))).dtype


# --------------------------------------------------------------------- simple reductions

def _empty(block: np.ndarray, axes: tuple[int, ...]) -> bool:
    return builtins.any(block.shape[a] == 0 for a in axes)


def _np_chunk(func: Callable, dtype: Any, block: np.ndarray, axes: tuple[int, ...]) -> Any:
    return func(block, axis=axes, keepdims=True, **({"dtype": dtype} if dtype else {}))


def _np_chunk_nonempty(func: Callable, block: np.ndarray, axes: tuple[int, ...]) -> Any:
    return None if _empty(block, axes) else func(block, axis=axes, keepdims=True)


def _fold(ufunc: np.ufunc, parts: list) -> Any:
    parts = [p for p in parts if p is not None]
    return functools.reduce(ufunc, parts) if parts else None


def _identity_or_raise(opname: str, partial: Any) -> Any:
    if partial is None:
        raise ValueError(f"zero-size array to reduction operation {opname} which has no "
                         "identity")
    return partial


def _identity(partial: Any) -> Any:
    return partial


def _simple(x: Array, npfunc: Callable, ufunc: np.ufunc, axis: Any, keepdims: bool,
            dtype: np.dtype, split_every: int | None, name: str, pass_dtype: bool) -> Array:
    chunk = functools.partial(_np_chunk, npfunc, dtype if pass_dtype else None)
    return reduction(x, chunk, functools.partial(_fold, ufunc), _identity, axis, keepdims,
                     dtype, name, split_every)


def sum(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
        split_every: int | None = None, out: None = None) -> Array:
    """Sum of elements over ``axis`` (None: all axes)."""
    _check_out(out)
    dtype = _default_dtype(np.sum, dtype, x)
    return _simple(x, np.sum, np.add, axis, keepdims, dtype, split_every, "sum", True)


def prod(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
         split_every: int | None = None, out: None = None) -> Array:
    """Product of elements over ``axis``."""
    _check_out(out)
    dtype = _default_dtype(np.prod, dtype, x)
    return _simple(x, np.prod, np.multiply, axis, keepdims, dtype, split_every, "prod", True)


def any(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
        out: None = None) -> Array:
    """Whether any element over ``axis`` is true."""
    _check_out(out)
    return _simple(x, np.any, np.logical_or, axis, keepdims, np.dtype(bool), split_every,
                   "any", False)


def all(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
        out: None = None) -> Array:
    """Whether all elements over ``axis`` are true."""
    _check_out(out)
    return _simple(x, np.all, np.logical_and, axis, keepdims, np.dtype(bool), split_every,
                   "all", False)


def _extreme(x: Array, npfunc: Callable, ufunc: np.ufunc, axis: Any, keepdims: bool,
             split_every: int | None, name: str) -> Array:
    chunk = functools.partial(_np_chunk_nonempty, npfunc)
    aggregate = functools.partial(_identity_or_raise, ufunc.__name__)
    return reduction(x, chunk, functools.partial(_fold, ufunc), aggregate, axis, keepdims,
                     x.dtype, name, split_every)


def min(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
        out: None = None) -> Array:
    """Minimum over ``axis``."""
    _check_out(out)
    return _extreme(x, np.min, np.minimum, axis, keepdims, split_every, "min")


def max(x: Array, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
        out: None = None) -> Array:
    """Maximum over ``axis``."""
    _check_out(out)
    return _extreme(x, np.max, np.maximum, axis, keepdims, split_every, "max")


# --------------------------------------------------------------------- moments

def _moment_chunk(block: np.ndarray, axes: tuple[int, ...]) -> tuple:
    """``(count, mean, M2)`` of a block; count is a scalar (the same for every element)."""
    n = math.prod(block.shape[a] for a in axes)
    data = block.astype(np.float64, copy=False) if block.dtype.kind in "biub" else block
    if n == 0:
        shape = tuple(1 if a in axes else s for a, s in enumerate(block.shape))
        zero = np.zeros(shape, dtype=np.result_type(data.dtype, np.float64))
        return 0, zero, zero
    mu = np.mean(data, axis=axes, keepdims=True, dtype=np.result_type(data.dtype, np.float64))
    dev = data - mu
    m2 = np.sum((dev * np.conj(dev)).real if np.iscomplexobj(dev) else dev * dev,
                axis=axes, keepdims=True)
    return n, mu, m2


def _moment_combine(parts: list) -> tuple:
    """Merge ``(count, mean, M2)`` triples with Chan et al.'s pairwise update."""
    n, mu, m2 = parts[0]
    for nb, mub, m2b in parts[1:]:
        total = n + nb
        if total == 0:
            continue
        delta = mub - mu
        mu = mu + delta * (nb / total)
        dd = (delta * np.conj(delta)).real if np.iscomplexobj(delta) else delta * delta
        m2 = m2 + m2b + dd * (n * nb / total)
        n = total
    return n, mu, m2


def _sum_count_chunk(block: np.ndarray, axes: tuple[int, ...]) -> tuple:
    """``(count, sum)`` of a block, the sum in at least float64 precision."""
    n = math.prod(block.shape[a] for a in axes)
    dtype = np.result_type(block.dtype, np.float64)
    return n, np.sum(block, axis=axes, keepdims=True, dtype=dtype)


def _sum_count_combine(parts: list) -> tuple:
    return builtins.sum(p[0] for p in parts), functools.reduce(np.add, [p[1] for p in parts])


def _mean_aggregate(partial: tuple) -> np.ndarray:
    n, total = partial
    return total / n if n else np.full_like(total, np.nan)


def _var_aggregate(ddof: int, partial: tuple) -> np.ndarray:
    n, _, m2 = partial
    with np.errstate(divide="ignore", invalid="ignore"):
        return m2 / (n - ddof) if n - ddof > 0 else np.full_like(m2, np.nan)


def _std_aggregate(ddof: int, partial: tuple) -> np.ndarray:
    return np.sqrt(_var_aggregate(ddof, partial))


def mean(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False,
         split_every: int | None = None, out: None = None) -> Array:
    """Arithmetic mean over ``axis``."""
    _check_out(out)
    dtype = _default_dtype(np.mean, dtype, x)
    return reduction(x, _sum_count_chunk, _sum_count_combine, _mean_aggregate, axis,
                     keepdims, dtype, "mean", split_every)


def var(x: Array, axis: Any = None, dtype: Any = None, ddof: int = 0, keepdims: bool = False,
        split_every: int | None = None, out: None = None) -> Array:
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom (numerically stable)."""
    _check_out(out)
    dtype = _default_dtype(np.var, dtype, x)
    return reduction(x, _moment_chunk, _moment_combine,
                     functools.partial(_var_aggregate, int(ddof)), axis, keepdims, dtype,
                     "var", split_every)


def std(x: Array, axis: Any = None, dtype: Any = None, ddof: int = 0, keepdims: bool = False,
        split_every: int | None = None, out: None = None) -> Array:
    """Standard deviation over ``axis`` with ``ddof`` delta degrees of freedom."""
    _check_out(out)
    dtype = _default_dtype(np.std, dtype, x)
    return reduction(x, _moment_chunk, _moment_combine,
                     functools.partial(_std_aggregate, int(ddof)), axis, keepdims, dtype,
                     "std", split_every)


# --------------------------------------------------------------------- argmin / argmax

def _arg_chunk(kind: str, block: np.ndarray, axes: tuple[int, ...], start: tuple[int, ...],
               shape: tuple[int, ...] | None) -> Any:
    """``(values, global indices)`` of the block's extreme along ``axes``.

    ``kind`` is ``min``/``max``, or ``nanmin``/``nanmax`` to skip NaN (a slice that is all
    NaN reports NaN).  With ``shape`` (flattened search over all axes) indices are flat
    indices of the whole array; otherwise they are positions along the single reduced axis.
    """
    if _empty(block, axes):
        return None
    skipna = kind.startswith("nan") and block.dtype.kind in "fc"
    find = np.argmin if kind.endswith("min") else np.argmax
    nanfind = np.nanargmin if kind.endswith("min") else np.nanargmax
    if shape is not None:
        if skipna and not np.isnan(block).all():
            local = int(nanfind(block))
        else:
            local = int(find(block))
        pos = np.unravel_index(local, block.shape)
        flat = np.ravel_multi_index(tuple(p + s for p, s in zip(pos, start)), shape)
        ones = (1,) * block.ndim
        return block.reshape(-1)[local:local + 1].reshape(ones), np.full(ones, flat, np.intp)
    (a,) = axes
    if skipna:
        all_nan = np.isnan(block).all(axis=a, keepdims=True)
        local = nanfind(np.where(all_nan, 0, block), axis=a, keepdims=True)
    else:
        local = find(block, axis=a, keepdims=True)
    return np.take_along_axis(block, local, axis=a), (local + start[a]).astype(np.intp)


def _arg_combine(kind: str, parts: list) -> Any:
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    vals, idx = parts[0]
    for vb, ib in parts[1:]:
        better = vb < vals if kind.endswith("min") else vb > vals
        nan_a, nan_b = vals != vals, vb != vb
        tie = (vb == vals) | (nan_a & nan_b)
        if kind.startswith("nan"):  # NaN loses
            take = better | (nan_a & ~nan_b) | (tie & (ib < idx))
        else:  # NaN wins, as in numpy
            take = (better & ~nan_a) | (nan_b & ~nan_a) | (tie & (ib < idx))
        vals, idx = np.where(take, vb, vals), np.where(take, ib, idx)
    return vals, idx


def _arg_aggregate(kind: str, partial: Any) -> np.ndarray:
    if partial is None:
        raise ValueError(f"attempt to get arg{kind} of an empty sequence")
    if kind.startswith("nan") and np.any(partial[0] != partial[0]):
        raise ValueError("All-NaN slice encountered")
    return partial[1]


def _arg(kind: str, x: Array, axis: int | None, keepdims: bool,
         split_every: int | None) -> Array:
    if axis is not None and not isinstance(axis, (int, np.integer)):
        raise TypeError(f"arg{kind} takes one axis or None, got {axis!r}")
    axes = normalize_axis(axis, x.ndim)
    if not known(x.chunks):
        raise ValueError(f"arg{kind} needs known chunk sizes; call compute_chunk_sizes()")
    starts = [offsets(c) for c in x.chunks]
    shape = tuple(int(n) for n in x.shape) if axis is None else None

    def chunk_args(idx: tuple[int, ...]) -> tuple:
        return tuple(starts[a][i] for a, i in enumerate(idx)), shape

    out = reduction(x, functools.partial(_arg_chunk, kind),
                    functools.partial(_arg_combine, kind),
                    functools.partial(_arg_aggregate, kind), axes, keepdims or axis is None,
                    np.intp, f"arg{kind}", split_every, chunk_args)
    if axis is None and not keepdims:
        from distml.array.slicing import getitem
        out = getitem(out, (0,) * x.ndim)
    return out


def argmin(x: Array, axis: int | None = None, keepdims: bool = False,
           split_every: int | None = None, out: None = None) -> Array:
    """Index of the minimum along ``axis`` (flat index when ``axis`` is None)."""
    _check_out(out)
    return _arg("min", x, axis, keepdims, split_every)


def argmax(x: Array, axis: int | None = None, keepdims: bool = False,
           split_every: int | None = None, out: None = None) -> Array:
    """Index of the maximum along ``axis`` (flat index when ``axis`` is None)."""
    _check_out(out)
    return _arg("max", x, axis, keepdims, split_every)


def nanargmin(x: Array, axis: int | None = None, keepdims: bool = False,
              split_every: int | None = None, out: None = None) -> Array:
    """Index of the minimum along ``axis`` ignoring NaN; ValueError for an all-NaN slice."""
    _check_out(out)
    return _arg("nanmin", x, axis, keepdims, split_every)


def nanargmax(x: Array, axis: int | None = None, keepdims: bool = False,
              split_every: int | None = None, out: None = None) -> Array:
    """Index of the maximum along ``axis`` ignoring NaN; ValueError for an all-NaN slice."""
    _check_out(out)
    return _arg("nanmax", x, axis, keepdims, split_every)

