"""Integer-array indexing on several axes at once, with numpy's rules (``x[i0, i1]``).

The index arrays broadcast to one shape ``B``; element ``p`` of the result takes the point
``(i0[p], i1[p], ...)`` on the indexed axes and everything along the other axes.  The
result's ``B`` axes replace the indexed axes when those were adjacent in the index, and
come first otherwise.  The points are split into pieces along ``B``'s first axis; each
output block gathers its points from the input blocks that hold them, one task per block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from distml.array.chunks import _is_known, offsets, tokenize
from distml.array.core import Array

__all__ = ["gather", "check_bounds"]


def check_bounds(idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``idx`` with negative positions counted from the end; IndexError naming ``axis``."""
    idx = np.asarray(idx)
    wrapped = np.where(idx < 0, idx + n, idx).astype(np.intp)
    bad = (wrapped < 0) | (wrapped >= n)
    if bad.any():
        raise IndexError(f"index {int(idx[bad].flat[0])} is out of bounds for axis {axis} "
                         f"with size {n}")
    return wrapped


def _gather_block(blocks: list, local: list, positions: list, npoints: int,
                  axes: tuple[int, ...], piece_shape: tuple[int, ...], out_pos: int
                  ) -> np.ndarray:
    """The points of one output block: ``local[g]`` of ``blocks[g]`` go to ``positions[g]``."""
    k = len(axes)
    out = None
    for block, loc, pos in zip(blocks, local, positions):
        values = np.moveaxis(block, axes, tuple(range(k)))[tuple(loc)]
        if out is None:
            out = np.empty((npoints, *values.shape[1:]), dtype=block.dtype)
        out[pos] = values
    out = out.reshape(piece_shape + out.shape[1:])
    nb = len(piece_shape)
    return np.moveaxis(out, tuple(range(nb)), tuple(range(out_pos, out_pos + nb)))


def gather(y: Array, axes: Sequence[int], indices: Sequence[np.ndarray], front: bool) -> Array:
    """``y`` indexed by the integer arrays ``indices`` on ``axes`` (slices on the others).

    ``indices`` must already be in bounds, non-negative and broadcast to one shape.  With
    ``front`` the broadcast axes come first in the result, else at ``axes[0]`` (which must
    then be adjacent axes in increasing order).
    """
    axes = tuple(axes)
    for a in axes:
        if not all(_is_known(c) for c in y.chunks[a]):
            raise ValueError(f"cannot index axis {a} of unknown length with an array; call "
                             "compute_chunk_sizes() first")
    shape = indices[0].shape
    rows_shape = shape or (1,)
    rest = [a for a in range(y.ndim) if a not in axes]
    out_pos = 0 if front else axes[0]
    per_row = math.prod(rows_shape[1:])
    target = max(1, *(max(y.chunks[a]) for a in axes))
    rows_per_piece = max(1, target // max(1, per_row))
    bounds = list(range(0, rows_shape[0], rows_per_piece)) + [rows_shape[0]]
    pieces = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])] or [(0, 0)]
    flat = [np.asarray(i).reshape(-1) for i in indices]
    starts = [np.asarray(offsets(y.chunks[a])) for a in axes]
    name = f"vindex-{tokenize(y, axes, list(indices), front)}"
    dsk: dict = {}
    for p, (lo, hi) in enumerate(pieces):
        pts = slice(lo * per_row, hi * per_row)
        coords = [f[pts] for f in flat]
        block_of = [np.searchsorted(s, c, side="right") - 1 for s, c in zip(starts, coords)]
        npoints = (hi - lo) * per_row
        if npoints:
            combos, inverse = np.unique(np.stack(block_of, axis=1), axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            groups = []
            for g, combo in enumerate(combos):
                where = np.flatnonzero(inverse == g)
                local = [c[where] - s[combo[j]] for j, (c, s) in enumerate(zip(coords, starts))]
                groups.append((tuple(int(v) for v in combo), local, where))
        else:
            empty = np.zeros(0, dtype=np.intp)
            groups = [((0,) * len(axes), [empty] * len(axes), empty)]
        piece_shape = () if not shape else (hi - lo, *rows_shape[1:])
        for rest_idx in itertools.product(*(range(y.numblocks[a]) for a in rest)):
            keys = []
            for combo, _, _ in groups:
                full = [0] * y.ndim
                for a, b in zip(axes, combo):
                    full[a] = b
                for a, b in zip(rest, rest_idx):
                    full[a] = b
                keys.append((y.name, *full))
            out_idx = list(rest_idx)
            if shape:
                out_idx[out_pos:out_pos] = [p] + [0] * (len(shape) - 1)
            dsk[(name, *out_idx)] = (_gather_block, keys, [g[1] for g in groups],
                                     [g[2] for g in groups], npoints, axes, piece_shape,
                                     out_pos)
    chunks: list[Any] = [y.chunks[a] for a in rest]
    if shape:
        chunks[out_pos:out_pos] = [tuple(hi - lo for lo, hi in pieces)] + [
            (n,) for n in shape[1:]]
    return Array({**y.dask, **dsk}, name, tuple(chunks), y.dtype)
