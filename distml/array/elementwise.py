"""Elementwise operations with numpy broadcasting: operators, ufuncs, ``where``, ``clip``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from distml.array.blockwise import _LETTERS, blockwise
from distml.array.chunks import tokenize
from distml.array.core import Array

__all__ = ["elemwise", "apply_ufunc", "where", "clip", "abs", "broadcast_shapes"]


def broadcast_shapes(*shapes: tuple) -> tuple:
    """numpy's broadcast shape, allowing unknown (nan) lengths that match each other."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        lengths = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        sizes = {n for n in lengths if n == n and n != 1}
        if len(sizes) > 1:
            raise ValueError(f"operands could not be broadcast together with shapes "
                             f"{' '.join(map(str, shapes))}")
        if any(n != n for n in lengths):
            if sizes:
                raise ValueError("cannot broadcast an axis of unknown length against "
                                 f"shapes {shapes}; call compute_chunk_sizes() first")
            out.append(float("nan"))
        else:
            out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _probe(arg: Any) -> Any:
    if isinstance(arg, (Array, np.ndarray)):
        return np.ones((1,) * arg.ndim, dtype=arg.dtype)
    return arg


def elemwise(op: Callable, *args: Any, dtype: Any = None, name: str | None = None,
             extra: tuple = (), **kwargs: Any) -> Array:
    """Apply the elementwise function ``op`` to broadcast, chunk-aligned arguments.

    Arguments may be Arrays, numpy arrays (split to match) and scalars.  ``extra`` holds
    trailing arguments passed to ``op`` unchanged; keyword arguments go to ``op``.
    """
    from distml.array.creation import from_array
    shapes = [a.shape for a in args if isinstance(a, (Array, np.ndarray))]
    out_shape = broadcast_shapes(*shapes)
    ndim = len(out_shape)
    if dtype is None:
        with np.errstate(all="ignore"):
            dtype = np.asarray(op(*[_probe(a) for a in args], *extra, **kwargs)).dtype
    arrays = [a for a in args if isinstance(a, Array)]
    ref_chunks: list = [None] * ndim
    for a in arrays:
        for axis in range(a.ndim):
            pos = ndim - a.ndim + axis
            if ref_chunks[pos] is None and a.shape[axis] != 1:
                ref_chunks[pos] = a.chunks[axis]
    pairs: list = []
    for a in args:
        if isinstance(a, np.ndarray) and a.ndim > 0:
            chunks = tuple(
                (1,) if n == 1 else (ref_chunks[ndim - a.ndim + i] or (n,))
                for i, n in enumerate(a.shape))
            a = from_array(a, chunks=chunks)
        if isinstance(a, Array):
            pairs += [a, _LETTERS[ndim - a.ndim:ndim]]
        else:
            pairs += [a.item() if isinstance(a, np.ndarray) else a, None]
    pairs += [e for x in extra for e in (x, None)]
    opname = getattr(op, "__name__", "elemwise")
    if name is None:
        name = f"{opname}-" + tokenize(op, pairs, extra, kwargs, np.dtype(dtype))
    else:
        name = f"{name}-" + tokenize(op, pairs, extra, kwargs, np.dtype(dtype))
    return blockwise(op, _LETTERS[:ndim], *pairs, dtype=dtype, name=name, **kwargs)


def apply_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``Array.__array_ufunc__``: elementwise calls of ufuncs give Arrays."""
    if method != "__call__":
        return NotImplemented
    if kwargs.get("out") is not None:
        raise TypeError(f"{ufunc.__name__}: out= is not supported for distml arrays")
    kwargs = {k: v for k, v in kwargs.items() if k != "out"}
    if ufunc is np.matmul:
        from distml.array.linalg import matmul
        return matmul(*inputs)
    if ufunc.nout != 1:
        raise TypeError(f"{ufunc.__name__} has {ufunc.nout} outputs; only single-output "
                        "ufuncs are supported")
    for x in inputs:
        if not isinstance(x, (Array, np.ndarray, np.generic, int, float, complex, bool)):
            return NotImplemented
    return elemwise(ufunc, *inputs, **kwargs)


def where(condition: Any, x: Any, y: Any) -> Array:
    """Elements of ``x`` where ``condition`` holds, else of ``y`` (broadcast)."""
    return elemwise(np.where, condition, x, y)


def _clip(a: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    return np.clip(a, lo, hi)


def clip(x: Array, min: Any = None, max: Any = None) -> Array:
    """Limit the values of ``x`` to ``[min, max]`` (either may be None)."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min and max")
    return elemwise(_clip, x, min, max, name="clip")


def abs(x: Array) -> Array:
    """Elementwise absolute value."""
    return elemwise(np.absolute, x)
