"""Indexing: basic slicing (ints, slices with steps, None, Ellipsis), integer-array and
boolean-mask selection along one axis.  A boolean mask gives blocks of unknown length
(``nan`` chunks); :meth:`Array.compute_chunk_sizes` resolves them."""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from typing import Any

import numpy as np

from distml.array.chunks import _is_known, offsets, tokenize
from distml.array.core import Array

__all__ = ["getitem"]


def _slice_plan(s: slice, chunks_1d: tuple) -> list[tuple[int, slice, int]]:
    """``(block, local slice, length)`` for each output block of ``s`` along one axis."""
    n = sum(chunks_1d)
    start, stop, step = s.indices(n)
    starts = offsets(chunks_1d)
    plan = []
    blocks = range(len(chunks_1d))
    for i in (blocks if step > 0 else reversed(blocks)):
        lo, hi = starts[i], starts[i + 1]
        if step > 0:
            first = start if start >= lo else start + math.ceil((lo - start) / step) * step
            end = min(hi, stop)
            if first >= end:
                continue
            count = math.ceil((end - first) / step)
            plan.append((i, slice(first - lo, end - lo, step), count))
        else:
            top = min(start, hi - 1)
            first = start - math.ceil((start - top) / -step) * -step
            bottom = max(stop, lo - 1)  # exclusive
            if first <= bottom or first < lo:
                continue
            count = math.ceil((first - bottom) / -step)
            local_stop = bottom - lo if bottom - lo >= 0 else None
            plan.append((i, slice(first - lo, local_stop, step), count))
    return plan or [(0, slice(0, 0), 0)]


def _expand(index: tuple, ndim: int) -> tuple:
    n_ell = sum(1 for i in index if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but "
                         f"{used} were indexed")
    if n_ell:
        pos = next(k for k, i in enumerate(index) if i is Ellipsis)
        return index[:pos] + (slice(None),) * (ndim - used) + index[pos + 1:]
    return index + (slice(None),) * (ndim - used)


def _basic(x: Array, index: tuple) -> Array:
    """Basic indexing with ints, slices and None (``index`` already expanded)."""
    per_axis: list = []  # for each item: ("new",) | ("int", block, local) | ("slice", plan)
    axis = 0
    for item in index:
        if item is None:
            per_axis.append(("new",))
            continue
        chunks_1d = x.chunks[axis]
        if isinstance(item, (int, np.integer)):
            if not all(_is_known(c) for c in chunks_1d):
                raise ValueError(f"cannot index axis {axis} of unknown length with an int; "
                                 "call compute_chunk_sizes() first")
            n = sum(chunks_1d)
            i = int(item) + n if item < 0 else int(item)
            if not 0 <= i < n:
                raise IndexError(f"index {int(item)} is out of bounds for axis {axis} with "
                                 f"size {n}")
            starts = offsets(chunks_1d)
            b = bisect.bisect_right(starts, i) - 1
            while chunks_1d[b] == 0:
                b += 1
            per_axis.append(("int", b, i - starts[b]))
        elif isinstance(item, slice):
            if item == slice(None) or item == slice(None, None, 1):
                plan = [(b, slice(None), c) for b, c in enumerate(chunks_1d)]
            else:
                if not all(_is_known(c) for c in chunks_1d):
                    raise ValueError(f"cannot slice axis {axis} of unknown length; call "
                                     "compute_chunk_sizes() first")
                if item.step == 0:
                    raise ValueError("slice step cannot be zero")
                plan = _slice_plan(item, chunks_1d)
            per_axis.append(("slice", plan))
        else:
            raise IndexError(f"unsupported index {item!r} of type {type(item).__name__}")
        axis += 1
    if all(p[0] == "slice" and all(s == slice(None) for _, s, _ in p[1]) for p in per_axis):
        return x
    name = f"getitem-{tokenize(x, [repr(i) for i in index])}"
    out_chunks = []
    ranges = []
    for p in per_axis:
        if p[0] == "new":
            out_chunks.append((1,))
            ranges.append(range(1))
        elif p[0] == "slice":
            out_chunks.append(tuple(c for _, _, c in p[1]))
            ranges.append(range(len(p[1])))
    dsk: dict = {}
    for out_idx in itertools.product(*ranges):
        it = iter(out_idx)
        in_idx, local = [], []
        for p in per_axis:
            if p[0] == "new":
                next(it)
                local.append(None)
            elif p[0] == "int":
                in_idx.append(p[1])
                local.append(p[2])
            else:
                b, s, _ = p[1][next(it)]
                in_idx.append(b)
                local.append(s)
        dsk[(name, *out_idx)] = (operator.getitem, (x.name, *in_idx), tuple(local))
    return Array({**x.dask, **dsk}, name, tuple(out_chunks), x.dtype)


def _mask_block(block: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    return np.compress(mask, block, axis=axis)


def _mask(x: Array, mask: Any, axis: int) -> Array:
    from distml.array.creation import from_array
    if isinstance(mask, np.ndarray):
        if mask.shape != (x.shape[axis],):
            raise IndexError(f"boolean index of shape {mask.shape} does not match axis "
                             f"{axis} of length {x.shape[axis]}")
        mask = from_array(mask, chunks=(x.chunks[axis],))
    n, m = x.shape[axis], mask.shape[0]
    if _is_known(n) and _is_known(m) and n != m:
        raise IndexError(f"boolean index of length {m} does not match axis {axis} of "
                         f"length {n}")
    mask = mask.rechunk((x.chunks[axis],))
    name = f"mask-{tokenize(x, mask, axis)}"
    dsk = {}
    for idx in itertools.product(*map(range, x.numblocks)):
        dsk[(name, *idx)] = (_mask_block, (x.name, *idx), (mask.name, idx[axis]), axis)
    chunks = tuple((float("nan"),) * len(c) if a == axis else c for a, c in enumerate(x.chunks))
    return Array({**x.dask, **mask.dask, **dsk}, name, chunks, x.dtype)


def _take_block(blocks: list, local: list, positions: np.ndarray, axis: int) -> np.ndarray:
    """Elements ``local[k]`` of ``blocks[k]`` along ``axis``, placed at ``positions``."""
    parts = np.concatenate([np.take(b, li, axis=axis) for b, li in zip(blocks, local)],
                           axis=axis)
    inverse = np.empty_like(positions)
    inverse[positions] = np.arange(len(positions))
    return np.take(parts, inverse, axis=axis)


def _take(x: Array, idx: np.ndarray, axis: int) -> Array:
    chunks_1d = x.chunks[axis]
    if not all(_is_known(c) for c in chunks_1d):
        raise ValueError(f"cannot take from axis {axis} of unknown length; call "
                         "compute_chunk_sizes() first")
    n = sum(chunks_1d)
    idx = np.where(idx < 0, idx + n, idx).astype(np.intp)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise IndexError(f"index {int(bad[0])} is out of bounds for axis {axis} with size {n}")
    starts = np.asarray(offsets(chunks_1d))
    block_of = np.searchsorted(starts, idx, side="right") - 1
    piece = max(1, max(chunks_1d))
    out_pieces = [slice(i, min(i + piece, len(idx))) for i in range(0, len(idx), piece)]
    out_pieces = out_pieces or [slice(0, 0)]
    name = f"take-{tokenize(x, idx, axis)}"
    dsk: dict = {}
    for p, sl in enumerate(out_pieces):
        ids, blocks = idx[sl], block_of[sl]
        order = np.argsort(blocks, kind="stable")
        used = sorted(set(blocks.tolist())) or [0]
        local = [ids[blocks == b] - starts[b] for b in used] if ids.size else [ids]
        for other in itertools.product(*(range(nb) for a, nb in enumerate(x.numblocks)
                                         if a != axis)):
            def key(b: int, other: tuple = other) -> tuple:
                full = list(other)
                full.insert(axis, b)
                return (x.name, *full)
            out_idx = list(other)
            out_idx.insert(axis, p)
            dsk[(name, *out_idx)] = (_take_block, [key(b) for b in used], local,
                                     order.astype(np.intp), axis)
    chunks = list(x.chunks)
    chunks[axis] = tuple(s.stop - s.start for s in out_pieces)
    return Array({**x.dask, **dsk}, name, tuple(chunks), x.dtype)


def getitem(x: Array, index: Any) -> Array:
    """``x[index]`` (see the module docstring for what is supported)."""
    if not isinstance(index, tuple):
        index = (index,)
    index = tuple(np.asarray(i) if isinstance(i, list) else i for i in index)
    advanced = [k for k, i in enumerate(index)
                if isinstance(i, (Array, np.ndarray)) and not (isinstance(i, np.ndarray)
                                                                and i.ndim == 0)]
    index = tuple(i.item() if isinstance(i, np.ndarray) and i.ndim == 0 else i for i in index)
    if len(advanced) > 1:
        raise IndexError("only one array index per indexing operation is supported")
    if not advanced:
        return _basic(x, _expand(index, x.ndim))
    (pos,) = advanced
    arr = index[pos]
    marker = _Marker()
    expanded = _expand(index[:pos] + (marker,) + index[pos + 1:], x.ndim)
    at = next(k for k, i in enumerate(expanded) if i is marker)
    out_axis = sum(1 for i in expanded[:at] if not isinstance(i, (int, np.integer)))
    expanded = expanded[:at] + (slice(None),) + expanded[at + 1:]
    y = _basic(x, expanded)
    if arr.dtype == bool:
        if arr.ndim != 1:
            raise IndexError("boolean masks must be 1-d (select along one axis); "
                                      f"got a {arr.ndim}-d mask")
        return _mask(y, arr, out_axis)
    if isinstance(arr, Array):
        raise IndexError("indexing with a distml integer Array; compute it first")
    if arr.dtype.kind not in "iu":
        raise IndexError(f"arrays used as indices must be of integer or boolean type, "
                         f"got {arr.dtype}")
    if arr.ndim != 1:
        raise IndexError(f"integer index arrays must be 1-d, got {arr.ndim}-d")
    return _take(y, arr, out_axis)


class _Marker:
    """Stands for the array index while the rest of the index is expanded."""
