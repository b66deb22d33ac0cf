"""Changing the block structure of an array."""

from __future__ import annotations

import itertools
import operator
from typing import Any

from distml.array.chunks import _is_known, chunks_equal, normalize_chunks, offsets, tokenize
from distml.array.core import Array, assemble
from distml.graph import identity

__all__ = ["rechunk", "plan_axis"]


def plan_axis(old: tuple, new: tuple) -> list[list[tuple[int, slice]]]:
    """For each new block along one axis, the ``(old block, slice within it)`` pieces."""
    if chunks_equal(old, new):
        return [[(i, slice(None))] for i in range(len(old))]
    old_starts = offsets(old)
    plan = []
    start = 0
    for length in new:
        stop = start + length
        pieces = []
        for i, (lo, hi) in enumerate(zip(old_starts[:-1], old_starts[1:])):
            a, b = max(lo, start), min(hi, stop)
            if a < b:
                pieces.append((i, slice(None) if (a, b) == (lo, hi) else slice(a - lo, b - lo)))
        if not pieces:  # an empty block: take nothing from the first old block
            pieces.append((0, slice(0, 0)))
        plan.append(pieces)
        start = stop
    return plan


def _nest(grid: list, ndim: int, make: Any, prefix: tuple = ()) -> Any:
    if len(prefix) == ndim:
        return make(prefix)
    return [_nest(grid, ndim, make, (*prefix, i)) for i in range(len(grid[len(prefix)]))]


def rechunk(x: Array, chunks: Any) -> Array:
    """``x`` with new chunks (any form :func:`normalize_chunks` accepts, or a dict by axis)."""
    new = normalize_chunks(chunks, x.shape, x.dtype, previous=x.chunks)
    if all(chunks_equal(a, b) for a, b in zip(new, x.chunks)):
        return x
    for axis, (a, b) in enumerate(zip(x.chunks, new)):
        if not chunks_equal(a, b) and not all(_is_known(n) for n in (*a, *b)):
            raise ValueError(f"cannot rechunk axis {axis} of unknown chunk sizes {a}; call "
                             "compute_chunk_sizes() first")
    plans = [plan_axis(a, b) for a, b in zip(x.chunks, new)]
    name = f"rechunk-{tokenize(x, new)}"
    dsk: dict = {}
    for out_idx in itertools.product(*(range(len(c)) for c in new)):
        pieces = [plans[a][i] for a, i in enumerate(out_idx)]

        def make(pos: tuple, pieces: list = pieces) -> Any:
            chosen = [pieces[a][p] for a, p in enumerate(pos)]
            key = (x.name, *[c[0] for c in chosen])
            index = tuple(c[1] for c in chosen)
            if all(s == slice(None) for s in index):
                return key
            return (operator.getitem, key, index)

        if all(len(p) == 1 for p in pieces):
            task = make((0,) * x.ndim)
            dsk[(name, *out_idx)] = task if callable(task[0]) else (identity, task)
        else:
            dsk[(name, *out_idx)] = (assemble, _nest(pieces, x.ndim, make))
    return Array({**x.dask, **dsk}, name, new, x.dtype)

