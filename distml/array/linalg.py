"""Linear algebra on blocks: transpose, tensordot, matmul and dot.

Every product is a block contraction: each output block multiplies the matching blocks
along the contracted axes (one task per pair) and sums the block products with a tree.
Operands are aligned first (common chunks on shared axes, broadcasting of length-1 batch
axes).  A transposed operand of ``tensordot`` is read through its source array (the block
product transposes on the fly), so ``X.T @ X`` on a tall-skinny ``X`` is one product per
row block followed by a tree sum into a single block.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distml.array.blockwise import unify_chunks
from distml.array.chunks import _is_known, tokenize
from distml.array.core import Array, merge_graphs

__all__ = ["transpose", "tensordot", "matmul", "dot"]

SPLIT_EVERY = 4
_BATCH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW"  # matmul's core axes are X Y Z


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


def _sum_blocks(blocks: list) -> np.ndarray:
    return functools.reduce(np.add, blocks)


def _block_tensordot(a: np.ndarray, b: np.ndarray, axes: tuple) -> np.ndarray:
    return np.tensordot(a, b, axes=axes)


def _probe_dtype(func: Callable, a: Array, b: Array) -> np.dtype:
    one_a = np.ones((1,) * a.ndim, dtype=a.dtype)
    one_b = np.ones((1,) * b.ndim, dtype=b.dtype)
    return np.asarray(func(one_a, one_b)).dtype


def _check_known(what: str, a: Array, axes_a: Sequence[int], b: Array,
                 axes_b: Sequence[int]) -> None:
    for x, axes in ((a, axes_a), (b, axes_b)):
        for ax in axes:
            if not all(_is_known(c) for c in x.chunks[ax]):
                raise ValueError(f"{what}: contracted axis {ax} of the array of shape "
                                 f"{x.shape} has unknown chunk sizes; call "
                                 "compute_chunk_sizes() first")


def contract(func: Callable, a: Array, a_ind: str, b: Array, b_ind: str, out_ind: str,
             name: str, extra: Any = None) -> Array:
    """Blocks of ``func(a_block, b_block)`` summed over the letters not in ``out_ind``.

    Letters name axes as in :func:`distml.array.blockwise`; shared letters are aligned to
    common chunks and an axis of length 1 broadcasts.  ``func`` must reduce the contracted
    axes of its two blocks and return the block of ``out_ind``; ``extra`` describes what
    ``func`` binds (it goes into the key names).  Each output block gets one product task
    per contracted block position and a tree of sums over them.
    """
    letters, pairs = unify_chunks([(a, a_ind), (b, b_ind)])
    (a, _), (b, _) = pairs
    contracted = sorted({c for c in a_ind + b_ind if c not in out_ind})
    numblocks = {c: len(letters[c]) for c in letters}
    dtype = _probe_dtype(func, a, b)
    token = tokenize(name, extra, a, a_ind, b, b_ind, out_ind)
    out_name, prod_name = f"{name}-{token}", f"{name}-product-{token}"

    def key(x: Array, ind: str, pos: dict[str, int]) -> tuple:
        return (x.name, *[0 if x.numblocks[ax] == 1 else pos[c] for ax, c in enumerate(ind)])

    dsk: dict = {}
    inner = list(itertools.product(*(range(numblocks[c]) for c in contracted)))
    for out_idx in itertools.product(*(range(numblocks[c]) for c in out_ind)):
        where = dict(zip(out_ind, out_idx))
        level = []
        for kflat, kk in enumerate(inner):
            pos = {**where, **dict(zip(contracted, kk))}
            k = (prod_name, *out_idx, kflat) if len(inner) > 1 else (out_name, *out_idx)
            dsk[k] = (func, key(a, a_ind, pos), key(b, b_ind, pos))
            level.append(k)
        depth = 0
        while len(level) > 1:
            depth += 1
            groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
            level = []
            for g, group in enumerate(groups):
                k = (out_name, *out_idx) if len(groups) == 1 else (
                    f"{name}-sum{depth}-{token}", *out_idx, g)
                dsk[k] = (_sum_blocks, group)
                level.append(k)
    chunks = tuple(letters[c] for c in out_ind)
    return Array(merge_graphs(a.dask, b.dask, dsk), out_name, chunks, dtype)


def _axis_list(spec: Any, ndim: int, which: str) -> list[int]:
    axes = [spec] if isinstance(spec, (int, np.integer)) else list(spec)
    out = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
            raise TypeError(f"tensordot: axes of {which} must be ints, got {ax!r}")
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(f"tensordot: axis {ax} of {which} is out of bounds "
                                          f"for array of dimension {ndim}")
        out.append(int(ax) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"tensordot: repeated axis in {spec!r} for {which}")
    return out


def tensordot(a: Any, b: Any, axes: Any = 2) -> Array:
    """Sum products over the given axes, like :func:`numpy.tensordot`.

    ``axes`` is an int ``N`` (the last ``N`` axes of ``a`` with the first ``N`` of ``b``)
    or a pair ``(axes_a, axes_b)`` of ints or sequences of ints.
    """
    a, b = _as_array(a), _as_array(b)
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(f"tensordot: axes={n} needs 0 <= axes <= the dimensions of both "
                             f"operands ({a.ndim} and {b.ndim})")
        ax_a, ax_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        try:
            spec_a, spec_b = axes
        except (TypeError, ValueError):
            raise TypeError(f"tensordot: axes must be an int or a pair (axes_a, axes_b), "
                            f"got {axes!r}") from None
        ax_a, ax_b = _axis_list(spec_a, a.ndim, "a"), _axis_list(spec_b, b.ndim, "b")
    if len(ax_a) != len(ax_b):
        raise ValueError(f"tensordot: {len(ax_a)} axes of a but {len(ax_b)} axes of b")
    _check_known("tensordot", a, ax_a, b, ax_b)
    for i, j in zip(ax_a, ax_b):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"shapes {a.shape} and {b.shape} not aligned: {a.shape[i]} "
                             f"(axis {i}) != {b.shape[j]} (axis {j})")
    a, ax_a = _untranspose(a, ax_a)
    b, ax_b = _untranspose(b, ax_b)
    a_ind = [""] * a.ndim
    b_ind = [""] * b.ndim
    letters = iter(_BATCH + "XYZ")
    for i, j in zip(ax_a, ax_b):
        a_ind[i] = b_ind[j] = next(letters)
    free = []
    for ind in (a_ind, b_ind):
        for ax in range(len(ind)):
            if not ind[ax]:
                ind[ax] = next(letters)
                free.append(ind[ax])
    func = functools.partial(_block_tensordot, axes=(tuple(ax_a), tuple(ax_b)))
    return contract(func, a, "".join(a_ind), b, "".join(b_ind), "".join(free), "tensordot",
                    extra=(tuple(ax_a), tuple(ax_b)))


def _batch_shape(a_batch: tuple, b_batch: tuple, a: Array, b: Array) -> None:
    n = max(len(a_batch), len(b_batch))
    pa = (1,) * (n - len(a_batch)) + tuple(a_batch)
    pb = (1,) * (n - len(b_batch)) + tuple(b_batch)
    for ax, (x, y) in enumerate(zip(pa, pb)):
        if not (_is_known(x) and _is_known(y)):
            raise ValueError(f"matmul: batch axis {ax} of shapes {a.shape} and {b.shape} has "
                             "unknown length; call compute_chunk_sizes() first")
        if x != y and x != 1 and y != 1:
            raise ValueError(f"matmul: batch axes of shapes {a.shape} and {b.shape} do not "
                             f"broadcast: {x} != {y} (batch axis {ax})")


def matmul(a: Any, b: Any) -> Array:
    """Matrix product ``a @ b`` with numpy's rules.

    1-d operands are vectors; operands with more than two axes are stacks of matrices in
    their last two axes, whose leading (batch) axes broadcast against each other.
    """
    a, b = _as_array(a), _as_array(b)
    for k, x in enumerate((a, b)):
        if x.ndim == 0:
            raise ValueError(f"matmul: input operand {k} does not have enough dimensions "
                             f"(a 0-d array; use * to multiply by a scalar)")
    ka, kb = a.ndim - 1, (b.ndim - 2 if b.ndim > 1 else 0)
    _check_known("matmul", a, [ka], b, [kb])
    if a.shape[ka] != b.shape[kb]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} not aligned: "
                         f"{a.shape[ka]} (axis {ka}) != {b.shape[kb]} (axis {kb})")
    if a.ndim <= 2 and b.ndim <= 2:
        return tensordot(a, b, axes=([ka], [kb]))
    a_batch, b_batch = a.shape[:-2], b.shape[:-2]
    _batch_shape(a_batch, b_batch, a, b)
    n = max(len(a_batch), len(b_batch))
    batch = _BATCH[:n]
    a_ind = batch[n - len(a_batch):] + ("X" if a.ndim > 1 else "") + "Z"
    b_ind = batch[n - len(b_batch):] + "Z" + ("Y" if b.ndim > 1 else "")
    out_ind = batch + ("X" if a.ndim > 1 else "") + ("Y" if b.ndim > 1 else "")
    return contract(np.matmul, a, a_ind, b, b_ind, out_ind, "matmul")


def dot(a: Any, b: Any) -> Array:
    """Dot product with numpy's rules.

    Scalars multiply; otherwise the last axis of ``a`` is summed against the only axis of a
    1-d ``b`` or the second-to-last axis of ``b``.
    """
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    kb = b.ndim - 2 if b.ndim > 1 else 0
    return tensordot(a, b, axes=([a.ndim - 1], [kb]))
