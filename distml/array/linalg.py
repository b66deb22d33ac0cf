"""Linear algebra on blocks: transpose, tensordot, matmul and dot.

A product multiplies matching blocks along the contracted axes and sums the block
products with a tree.  A transposed operand is read through its source array (the block
product transposes on the fly), so ``X.T @ X`` on a tall-skinny ``X`` is one product per
row block followed by a tree sum into a single block.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from distml.array.chunks import chunks_equal, common_chunks, known, tokenize
from distml.array.core import Array

__all__ = ["transpose", "tensordot", "matmul", "dot"]

SPLIT_EVERY = 4


def transpose(x: Array, axes: Sequence[int] | None = None) -> Array:
    """Permute the axes of ``x`` (reverse them when ``axes`` is None)."""
    ndim = x.ndim
    if axes is None:
        axes = tuple(range(ndim))[::-1]
    axes = tuple(int(a) % ndim if -ndim <= a < ndim else a for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"axes {axes} are not a permutation of the {ndim} axes")
    if axes == tuple(range(ndim)):
        return x
    name = f"transpose-{tokenize(x, axes)}"
    dsk = {}
    for out_idx in itertools.product(*(range(x.numblocks[a]) for a in axes)):
        in_idx = [0] * ndim
        for k, a in enumerate(axes):
            in_idx[a] = out_idx[k]
        dsk[(name, *out_idx)] = (np.transpose, (x.name, *in_idx), axes)
    out = Array({**x.dask, **dsk}, name, tuple(x.chunks[a] for a in axes), x.dtype)
    out._transposed_from = (x, axes)
    return out


def _as_array(x: Any) -> Array:
    if isinstance(x, Array):
        return x
    from distml.array.creation import from_array
    return from_array(np.asarray(x), chunks=-1)


def _untranspose(x: Array, contracted: list[int]) -> tuple[Array, list[int]]:
    """Read a transposed operand through its source when that keeps the free axis order."""
    source = getattr(x, "_transposed_from", None)
    if source is None:
        return x, contracted
    src, perm = source
    free = [perm[i] for i in range(x.ndim) if i not in contracted]
    if free != sorted(free):
        return x, contracted
    return src, [perm[i] for i in contracted]


def _block_product(a: np.ndarray, b: np.ndarray, axes: tuple) -> np.ndarray:
    return np.tensordot(a, b, axes=axes)


def _sum_blocks(blocks: list) -> np.ndarray:
    return functools.reduce(np.add, blocks)


def tensordot(a: Any, b: Any, axes: Any = 2) -> Array:
    """Sum products over the given axes, like :func:`numpy.tensordot`."""
    a, b = _as_array(a), _as_array(b)
    if isinstance(axes, (int, np.integer)):
        ax_a = list(range(a.ndim - axes, a.ndim))
        ax_b = list(range(axes))
    else:
        ax_a, ax_b = ([x] if isinstance(x, int) else list(x) for x in axes)
    if len(ax_a) != len(ax_b):
        raise ValueError(f"tensordot: {len(ax_a)} axes of a but {len(ax_b)} axes of b")
    ax_a = [x % a.ndim if -a.ndim <= x < a.ndim else _bad_axis(x, a.ndim) for x in ax_a]
    ax_b = [x % b.ndim if -b.ndim <= x < b.ndim else _bad_axis(x, b.ndim) for x in ax_b]
    for i, j in zip(ax_a, ax_b):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"shapes {a.shape} and {b.shape} not aligned: {a.shape[i]} "
                             f"(axis {i}) != {b.shape[j]} (axis {j})")
    a, ax_a = _untranspose(a, ax_a)
    b, ax_b = _untranspose(b, ax_b)
    for i, j in zip(ax_a, ax_b):
        if not chunks_equal(a.chunks[i], b.chunks[j]):
            if not known((a.chunks[i], b.chunks[j])):
                raise ValueError("tensordot: contracted axes have unknown chunk sizes; call "
                                 "compute_chunk_sizes() first")
            common = common_chunks(a.chunks[i], b.chunks[j])
            a, b = a.rechunk({i: common}), b.rechunk({j: common})
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [j for j in range(b.ndim) if j not in ax_b]
    dtype = np.result_type(a.dtype, b.dtype)
    token = tokenize(a, b, ax_a, ax_b)
    name, prod_name = f"tensordot-{token}", f"tensordot-product-{token}"
    block_axes = (tuple(ax_a), tuple(ax_b))
    contracted_blocks = list(itertools.product(*(range(a.numblocks[i]) for i in ax_a)))
    dsk: dict = {}
    for out_a in itertools.product(*(range(a.numblocks[i]) for i in free_a)):
        for out_b in itertools.product(*(range(b.numblocks[j]) for j in free_b)):
            out_idx = (*out_a, *out_b)
            level = []
            for kflat, kk in enumerate(contracted_blocks):
                ia, ib = [0] * a.ndim, [0] * b.ndim
                for i, v in zip(free_a, out_a):
                    ia[i] = v
                for j, v in zip(free_b, out_b):
                    ib[j] = v
                for i, j, v in zip(ax_a, ax_b, kk):
                    ia[i], ib[j] = v, v
                key = (prod_name, *out_idx, kflat) if len(contracted_blocks) > 1 else (
                    name, *out_idx)
                dsk[key] = (_block_product, (a.name, *ia), (b.name, *ib), block_axes)
                level.append(key)
            depth = 0
            while len(level) > 1:
                depth += 1
                groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
                level = []
                for g, group in enumerate(groups):
                    key = (name, *out_idx) if len(groups) == 1 else (
                        f"tensordot-sum{depth}-{token}", *out_idx, g)
                    dsk[key] = (_sum_blocks, group)
                    level.append(key)
    chunks = tuple([a.chunks[i] for i in free_a] + [b.chunks[j] for j in free_b])
    return Array({**a.dask, **b.dask, **dsk}, name, chunks, dtype)


def _bad_axis(axis: int, ndim: int) -> int:
    raise np.exceptions.AxisError(f"axis {axis} is out of bounds for array of dimension {ndim}")


def matmul(a: Any, b: Any) -> Array:
    """Matrix product of 1-d and 2-d arrays (``a @ b``)."""
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: input operand does not have enough dimensions (0-d)")
    if a.ndim > 2 or b.ndim > 2:
        raise ValueError(f"matmul supports 1-d and 2-d arrays, got {a.ndim}-d and "
                                  f"{b.ndim}-d")
    i, j = a.ndim - 1, 0
    if a.shape[i] != b.shape[j]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} not aligned: "
                         f"{a.shape[i]} (axis {i}) != {b.shape[j]} (axis {j})")
    return tensordot(a, b, axes=([i], [j]))


def dot(a: Any, b: Any) -> Array:
    """Dot product: ``matmul`` for 1-d and 2-d arrays, multiplication for scalars."""
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return matmul(a, b)

