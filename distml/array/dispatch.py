"""numpy functions on distml arrays (``__array_function__``): ``np.sum(x)``, ``np.dot(x, y)``.

Each supported numpy function maps to its distml counterpart, taking numpy's argument order.
Any other numpy function called with a distml array raises a TypeError naming it and the
supported ones, rather than silently computing the whole array in the client.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from distml.array import (creation, elementwise, linalg, manipulation, nanreductions,
                          reductions)
from distml.array.core import Array

__all__ = ["HANDLED", "array_function", "squeeze", "expand_dims", "round"]


def _sum_like(func: Callable) -> Callable:
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: None = None,
                keepdims: bool = False) -> Array:
        return func(_array(a), axis, dtype=dtype, keepdims=keepdims, out=out)
    return handler


def _var_like(func: Callable) -> Callable:
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: None = None, ddof: int = 0,
                keepdims: bool = False) -> Array:
        return func(_array(a), axis, dtype=dtype, ddof=ddof, keepdims=keepdims, out=out)
    return handler


def _min_like(func: Callable) -> Callable:
    def handler(a: Any, axis: Any = None, out: None = None, keepdims: bool = False) -> Array:
        return func(_array(a), axis, keepdims=keepdims, out=out)
    return handler


def _array(a: Any) -> Array:
    if isinstance(a, Array):
        return a
    return creation.from_array(np.asarray(a), chunks=-1)


def _where(condition: Any, *xy: Any) -> Array:
    if len(xy) != 2:
        raise TypeError("np.where(condition) with one argument (the positions of the true "
                        "elements) is not supported for distml arrays; pass x and y")
    return elementwise.where(condition, *xy)


def _clip(a: Any, a_min: Any = None, a_max: Any = None, out: None = None, *,
          min: Any = None, max: Any = None) -> Array:
    if out is not None:
        raise TypeError("clip: out= is not supported for distml arrays")
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    return elementwise.clip(_array(a), lo, hi)


def _round_block(block: np.ndarray, decimals: int) -> np.ndarray:
    return np.round(block, decimals)


def round(a: Array, decimals: int = 0, out: None = None) -> Array:
    """Elements rounded to ``decimals`` decimal places (numpy's round-half-to-even)."""
    if out is not None:
        raise TypeError("round: out= is not supported for distml arrays")
    return elementwise.elemwise(_round_block, _array(a), extra=(int(decimals),), name="round")


def _nan_to_num_block(block: np.ndarray, nan: float, posinf: Any, neginf: Any) -> np.ndarray:
    return np.nan_to_num(block, nan=nan, posinf=posinf, neginf=neginf)


def _nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
                neginf: Any = None) -> Array:
    return elementwise.elemwise(_nan_to_num_block, _array(x), extra=(nan, posinf, neginf),
                                name="nan_to_num")


def _isclose_block(a: np.ndarray, b: np.ndarray, rtol: float, atol: float,
                   equal_nan: bool) -> np.ndarray:
    return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def _isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> Array:
    return elementwise.elemwise(_isclose_block, a, b, extra=(rtol, atol, equal_nan),
                                dtype=bool, name="isclose")


def squeeze(a: Array, axis: Any = None) -> Array:
    """``a`` without its axes of length 1 (only those in ``axis`` when given)."""
    a = _array(a)
    if axis is None:
        axes = [k for k, n in enumerate(a.shape) if n == 1]
    else:
        axes = list(reductions.normalize_axis(axis, a.ndim))
        wrong = [k for k in axes if a.shape[k] != 1]
        if wrong:
            raise ValueError(f"cannot squeeze axis {wrong[0]} of length {a.shape[wrong[0]]}: "
                             "only axes of length one can be squeezed")
    return a[tuple(0 if k in axes else slice(None) for k in range(a.ndim))]


def expand_dims(a: Array, axis: Any) -> Array:
    """``a`` with new axes of length 1 at the positions ``axis`` of the result."""
    a = _array(a)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    new = reductions.normalize_axis(axes, a.ndim + len(axes))
    return a[tuple(None if k in new else slice(None) for k in range(a.ndim + len(new)))]


def _transpose(a: Any, axes: Any = None) -> Array:
    return linalg.transpose(_array(a), axes)


def _concatenate(arrays: Any, axis: int = 0, out: None = None, **kwargs: Any) -> Array:
    if out is not None or kwargs:
        raise TypeError(f"concatenate: {'out' if out is not None else sorted(kwargs)[0]}= is "
                        "not supported for distml arrays")
    return manipulation.concatenate(arrays, axis)


def _stack(arrays: Any, axis: int = 0, out: None = None, **kwargs: Any) -> Array:
    if out is not None or kwargs:
        raise TypeError(f"stack: {'out' if out is not None else sorted(kwargs)[0]}= is not "
                        "supported for distml arrays")
    return manipulation.stack(arrays, axis)


def _dot(a: Any, b: Any, out: None = None) -> Array:
    if out is not None:
        raise TypeError("dot: out= is not supported for distml arrays")
    return linalg.dot(a, b)


def _like(func: Callable) -> Callable:
    def handler(prototype: Array, dtype: Any = None, **kwargs: Any) -> Array:
        return func(prototype, dtype=dtype, **kwargs)
    return handler


def _full_like(prototype: Array, fill_value: Any, dtype: Any = None) -> Array:
    return creation.full_like(prototype, fill_value, dtype=dtype)


HANDLED: dict[Callable, Callable] = {
    np.sum: _sum_like(reductions.sum), np.prod: _sum_like(reductions.prod),
    np.mean: _sum_like(reductions.mean), np.nansum: _sum_like(nanreductions.nansum),
    np.nanprod: _sum_like(nanreductions.nanprod), np.nanmean: _sum_like(nanreductions.nanmean),
    np.var: _var_like(reductions.var), np.std: _var_like(reductions.std),
    np.nanvar: _var_like(nanreductions.nanvar), np.nanstd: _var_like(nanreductions.nanstd),
    np.min: _min_like(reductions.min), np.max: _min_like(reductions.max),
    np.amin: _min_like(reductions.min), np.amax: _min_like(reductions.max),
    np.nanmin: _min_like(nanreductions.nanmin), np.nanmax: _min_like(nanreductions.nanmax),
    np.any: _min_like(reductions.any), np.all: _min_like(reductions.all),
    np.argmin: _min_like(reductions.argmin), np.argmax: _min_like(reductions.argmax),
    np.nanargmin: _min_like(reductions.nanargmin),
    np.nanargmax: _min_like(reductions.nanargmax),
    np.concatenate: _concatenate, np.stack: _stack, np.dot: _dot,
    np.tensordot: linalg.tensordot, np.transpose: _transpose,
    np.where: _where, np.clip: _clip, np.round: round, np.around: round,
    np.nan_to_num: _nan_to_num, np.isclose: _isclose,
    np.squeeze: squeeze, np.expand_dims: expand_dims,
    np.zeros_like: _like(creation.zeros_like), np.ones_like: _like(creation.ones_like),
    np.full_like: _full_like,
    np.ndim: lambda a: _array(a).ndim, np.shape: lambda a: _array(a).shape,
    np.size: lambda a, axis=None: _array(a).size if axis is None else _array(a).shape[axis],
}


def array_function(func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
    """``Array.__array_function__``: run the distml version of ``func`` or raise TypeError."""
    impl = HANDLED.get(func)
    name = getattr(func, "__name__", repr(func))
    if impl is None:
        supported = ", ".join(sorted({f"np.{f.__name__}" for f in HANDLED}))
        raise TypeError(f"np.{name} is not supported for distml arrays; call .compute() "
                        f"first to get a numpy array. Supported: {supported}, and every "
                        "numpy ufunc")
    if not all(issubclass(t, (Array, np.ndarray)) for t in types):
        return NotImplemented
    try:
        inspect.signature(impl).bind(*args, **kwargs)
    except TypeError as exc:  # e.g. where= or initial=, which distml does not take
        raise TypeError(f"np.{name} on distml arrays: {exc}") from None
    return impl(*args, **kwargs)
