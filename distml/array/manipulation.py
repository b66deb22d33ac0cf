"""Joining arrays: ``concatenate`` and ``stack``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from distml.array.chunks import chunks_equal, tokenize
from distml.array.core import Array, merge_graphs
from distml.graph import identity

__all__ = ["concatenate", "stack"]


def _arrays(seq: Sequence[Any], what: str) -> list[Array]:
    from distml.array.creation import from_array
    arrays = [a if isinstance(a, Array) else from_array(np.asarray(a), chunks=-1) for a in seq]
    if not arrays:
        raise ValueError(f"{what} needs at least one array")
    return arrays


def _check_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"axis {axis} is out of bounds for array of dimension "
                                      f"{ndim}")
    return axis % ndim


def _match_chunks(arrays: list[Array], skip: int | None) -> list[Array]:
    """Rechunk every array to the first one's chunks on all axes but ``skip``."""
    ref = arrays[0]
    out = []
    for a in arrays:
        target = {ax: ref.chunks[ax] for ax in range(ref.ndim)
                  if ax != skip and not chunks_equal(a.chunks[ax], ref.chunks[ax])}
        out.append(a.rechunk(target) if target else a)
    return out


def concatenate(seq: Sequence[Any], axis: int = 0) -> Array:
    """Join arrays along an existing axis."""
    arrays = _arrays(seq, "concatenate")
    ndim = arrays[0].ndim
    if ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    if any(a.ndim != ndim for a in arrays):
        raise ValueError(f"all arrays must have the same number of dimensions, got "
                         f"{[a.ndim for a in arrays]}")
    axis = _check_axis(axis, ndim)
    for a in arrays[1:]:
        for ax in range(ndim):
            if ax != axis and a.shape[ax] != arrays[0].shape[ax]:
                raise ValueError(f"concatenate: shapes {arrays[0].shape} and {a.shape} "
                                 f"differ on axis {ax}")
    arrays = _match_chunks(arrays, axis)
    name = f"concatenate-{tokenize(arrays, axis)}"
    dsk: dict = {}
    offset = 0
    for a in arrays:
        for idx in itertools.product(*map(range, a.numblocks)):
            out_idx = list(idx)
            out_idx[axis] += offset
            dsk[(name, *out_idx)] = (identity, (a.name, *idx))
        offset += a.numblocks[axis]
    chunks = list(arrays[0].chunks)
    chunks[axis] = tuple(c for a in arrays for c in a.chunks[axis])
    dtype = np.result_type(*[a.dtype for a in arrays])
    return Array(merge_graphs(*[a.dask for a in arrays], dsk), name, tuple(chunks), dtype)


def stack(seq: Sequence[Any], axis: int = 0) -> Array:
    """Join arrays of equal shape along a new axis."""
    arrays = _arrays(seq, "stack")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"all input arrays must have the same shape, got {sorted(shapes)}")
    ndim = arrays[0].ndim + 1
    axis = _check_axis(axis, ndim)
    arrays = _match_chunks(arrays, None)
    name = f"stack-{tokenize(arrays, axis)}"
    dsk: dict = {}
    for k, a in enumerate(arrays):
        for idx in itertools.product(*map(range, a.numblocks)):
            out_idx = list(idx)
            out_idx.insert(axis, k)
            dsk[(name, *out_idx)] = (np.expand_dims, (a.name, *idx), axis)
    chunks = list(arrays[0].chunks)
    chunks.insert(axis, (1,) * len(arrays))
    dtype = np.result_type(*[a.dtype for a in arrays])
    return Array(merge_graphs(*[a.dask for a in arrays], dsk), name, tuple(chunks), dtype)
