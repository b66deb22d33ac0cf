"""Indexing: basic slicing (ints, slices with steps, None, Ellipsis), integer-array and
boolean-mask selection (on several axes through :mod:`distml.array.fancy`).  A distml
boolean Array as mask gives blocks of unknown length (``nan`` chunks);
:meth:`Array.compute_chunk_sizes` resolves them."""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from typing import Any

import numpy as np

from distml.array.chunks import _is_known, offsets, tokenize
from distml.array.core import Array
from distml.array.fancy import check_bounds, gather

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


def _consumes(item: Any) -> int:
    """How many axes of the array an index item uses (a boolean mask: its dimensions)."""
    if item is None or item is Ellipsis:
        return 0
    if isinstance(item, (np.ndarray, Array)) and item.dtype == bool:
        return item.ndim
    return 1


def _expand(index: tuple, ndim: int) -> tuple:
    """``index`` with the Ellipsis (or the missing trailing axes) spelled out as slices."""
    n_ell = sum(1 for i in index if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(_consumes(i) for i in index)
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


def _mask(x: Array, mask: Array, axis: int) -> Array:
    """``x`` masked along ``axis`` by a 1-d boolean Array of the same length."""
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
    idx = check_bounds(idx, sum(chunks_1d), axis)
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


def _mask_nd_block(block: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    return block[(slice(None),) * axis + (mask,)]


def _mask_nd(x: Array, mask: Array, axis: int) -> Array:
    """``x`` masked by a k-d boolean Array covering axes ``axis .. axis+k-1``.

    The covered axes after the first are joined into single blocks, so that each block's
    selected elements come out in numpy's (row-major) order.
    """
    covered = range(axis, axis + mask.ndim)
    for j, a in enumerate(covered):
        n, m = x.shape[a], mask.shape[j]
        if _is_known(n) and _is_known(m) and n != m:
            raise IndexError(f"boolean index did not match the array along axis {a}: the "
                             f"axis has length {n}, the mask {m}")
    if mask.ndim == 1:
        return _mask(x, mask, axis)
    x = x.rechunk({a: -1 for a in covered[1:]})
    mask = mask.rechunk(tuple(x.chunks[a] for a in covered))
    name = f"mask-{tokenize(x, mask, axis)}"
    grid = [range(1) if a in covered[1:] else range(n) for a, n in enumerate(x.numblocks)]
    dsk = {}
    for idx in itertools.product(*grid):
        out_idx = tuple(i for a, i in enumerate(idx) if a not in covered[1:])
        dsk[(name, *out_idx)] = (_mask_nd_block, (x.name, *idx),
                                 (mask.name, *idx[axis:axis + mask.ndim]), axis)
    chunks = tuple((float("nan"),) * len(c) if a == axis else c
                   for a, c in enumerate(x.chunks) if a not in covered[1:])
    return Array({**x.dask, **mask.dask, **dsk}, name, chunks, x.dtype)


def _is_int(item: Any) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def _clean(item: Any) -> Any:
    """One index item checked and normalized (lists to arrays, 0-d arrays to scalars)."""
    if isinstance(item, list):
        item = np.asarray(item)
        if item.size == 0:
            item = item.astype(np.intp)
    if isinstance(item, (bool, np.bool_)) or (isinstance(item, np.ndarray) and item.ndim == 0
                                              and item.dtype == bool):
        raise IndexError("boolean scalar indices are not supported; use a boolean array")
    if isinstance(item, np.ndarray) and item.ndim == 0:
        item = item.item()
    if isinstance(item, (np.ndarray, Array)):
        if item.dtype != bool and item.dtype.kind not in "iu":
            raise IndexError(f"arrays used as indices must be of integer or boolean type, "
                             f"got {item.dtype}")
    elif not (item is None or item is Ellipsis or isinstance(item, slice) or _is_int(item)):
        raise IndexError(f"unsupported index {item!r} of type {type(item).__name__}: use "
                         "ints, slices, None, Ellipsis, or integer or boolean arrays")
    return item


def _output_axes_before(items: tuple, pos: int) -> int:
    """How many result axes the items before ``pos`` make (slices and None do, ints don't)."""
    return sum(1 for i in items[:pos] if i is None or isinstance(i, slice))


def _distributed_mask(x: Array, items: tuple, pos: int) -> Array:
    mask = items[pos]
    if mask.dtype != bool:
        raise IndexError("indexing with a distml integer Array; compute it first")
    ints = [k for k, i in enumerate(items) if _is_int(i)]
    run = sorted(ints + [pos])
    if ints and run != list(range(run[0], run[-1] + 1)):
        raise IndexError("a distml boolean mask and integers separated by other indices: "
                         "index in two steps")
    rest = items[:pos] + (slice(None),) * mask.ndim + items[pos + 1:]
    return _mask_nd(_basic(x, rest), mask, _output_axes_before(items, pos))


def getitem(x: Array, index: Any) -> Array:
    """``x[index]`` with numpy's rules.

    Basic indexing (ints, slices with steps, None, Ellipsis) selects blocks and slices them.
    Integer arrays on one or several axes (broadcast together, negative positions counted
    from the end) gather points; numpy boolean masks act as their ``nonzero()`` positions.
    A distml boolean Array gives blocks of unknown length.
    """
    if not isinstance(index, tuple):
        index = (index,)
    items = _expand(tuple(_clean(i) for i in index), x.ndim)
    arrays = [k for k, i in enumerate(items) if isinstance(i, (Array, np.ndarray))]
    if not arrays:
        return _basic(x, items)
    distributed = [k for k in arrays if isinstance(items[k], Array)]
    if distributed:
        if len(arrays) > 1:
            raise IndexError("a distml Array index cannot be combined with other array "
                             "indices; index in two steps")
        return _distributed_mask(x, items, distributed[0])
    flat: list = []  # numpy masks replaced by their nonzero positions, one array per axis
    axis_of: list = []  # the array's axis each item of ``flat`` indexes (None: new axis)
    axis = 0
    for item in items:
        if isinstance(item, np.ndarray) and item.dtype == bool:
            lengths = x.shape[axis:axis + item.ndim]
            if not all(_is_known(n) for n in lengths):
                raise ValueError(f"cannot apply a boolean mask to axes of unknown length "
                                 f"{lengths}; call compute_chunk_sizes() first")
            if item.shape != tuple(lengths):
                raise IndexError(f"boolean index of shape {item.shape} does not match axes "
                                 f"{axis}..{axis + item.ndim - 1} of shape {tuple(lengths)}")
            flat.extend(item.nonzero())
            axis_of.extend(range(axis, axis + item.ndim))
            axis += item.ndim
        else:
            flat.append(item)
            axis_of.append(None if item is None else axis)
            axis += item is not None
    advanced = [k for k, i in enumerate(flat) if isinstance(i, np.ndarray) or _is_int(i)]
    for k in advanced:
        n = x.shape[axis_of[k]]
        if isinstance(flat[k], np.ndarray):
            if not _is_known(n):
                raise ValueError(f"cannot index axis {axis_of[k]} of unknown length with an "
                                 "array; call compute_chunk_sizes() first")
            flat[k] = check_bounds(flat[k], int(n), axis_of[k])
    if len(advanced) == 1:
        (pos,) = advanced
        if flat[pos].ndim == 1:
            rest = tuple(flat[:pos]) + (slice(None),) + tuple(flat[pos + 1:])
            return _take(_basic(x, rest), flat[pos], _output_axes_before(tuple(flat), pos))
    for k in advanced:
        if _is_int(flat[k]):
            n = x.shape[axis_of[k]]
            if not _is_known(n):
                raise ValueError(f"cannot index axis {axis_of[k]} of unknown length with an "
                                 "int; call compute_chunk_sizes() first")
            flat[k] = check_bounds(np.asarray(flat[k]), int(n), axis_of[k])
    try:
        points = np.broadcast_arrays(*[flat[k] for k in advanced])
    except ValueError:
        shapes = " ".join(str(flat[k].shape) for k in advanced)
        raise IndexError(f"shape mismatch: indexing arrays could not be broadcast together "
                         f"with shapes {shapes}") from None
    contiguous = advanced == list(range(advanced[0], advanced[-1] + 1))
    plain = tuple(slice(None) if k in advanced else i for k, i in enumerate(flat)
                  if i is not None)
    out = gather(_basic(x, plain), [axis_of[k] for k in advanced], points, not contiguous)
    if any(i is None for i in flat):  # put the new axes where numpy puts them
        tokens = ["new" if i is None else "adv" if k in advanced else "keep"
                  for k, i in enumerate(flat)]
        n_points = points[0].ndim
        if contiguous:
            first = tokens.index("adv")
            tokens = tokens[:first] + ["keep"] * n_points + [t for t in tokens[first:]
                                                             if t != "adv"]
        else:
            tokens = ["keep"] * n_points + [t for t in tokens if t != "adv"]
        out = _basic(out, tuple(None if t == "new" else slice(None) for t in tokens))
    return out
