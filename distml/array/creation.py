"""Creating arrays: from numpy-like data, constants, ranges, and per-block tasks or futures."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from distml.array.chunks import block_slices, normalize_chunks, tokenize
from distml.array.core import Array
from distml.graph import identity

__all__ = ["from_array", "from_blocks", "zeros", "ones", "full", "arange", "linspace",
           "zeros_like", "ones_like", "full_like"]


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(not isinstance(n, (int, np.integer)) or n < 0 for n in shape):
        raise ValueError(f"invalid shape {shape}: lengths must be non-negative ints")
    return tuple(int(n) for n in shape)


def _grid(chunks: tuple) -> Any:
    return itertools.product(*(range(len(c)) for c in chunks))


def from_array(x: Any, chunks: Any = "auto", name: str | None = None) -> Array:
    """Split ``x`` (numpy array, memmap, or anything sliceable with shape and dtype).

    Each block becomes a literal in the graph, read from ``x`` when this is called; for a
    file on disk prefer :func:`distml.array.from_npy`, whose blocks are read by the workers.
    """
    if isinstance(x, Array):
        return x.rechunk(chunks)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    shape = tuple(int(n) for n in x.shape)
    chunks = normalize_chunks(chunks, shape, x.dtype)
    name = name or f"array-{tokenize(x, chunks)}"
    dsk: dict = {}
    for idx in _grid(chunks):
        dsk[(name, *idx)] = np.array(x[block_slices(chunks, idx)], copy=True)
    return Array(dsk, name, chunks, x.dtype)


def _from_blocks_chunks(blocks: Any, ndim: int) -> tuple:
    out = []
    level = blocks
    for axis in range(ndim):
        lengths = []
        for i in range(len(level)):
            b = level[i]
            while isinstance(b, list):
                b = b[0]
            lengths.append(int(np.shape(b)[axis]))
        out.append(tuple(lengths))
        level = level[0]
    return tuple(out)


def from_blocks(blocks: Any, chunks: Any = None, dtype: Any = None,
                name: str | None = None) -> Array:
    """Build an array from a nested list of blocks (nesting = block grid).

    Blocks may be numpy arrays, futures on a cluster, or task tuples ``(func, *args)``.
    ``chunks`` (tuple of tuples of block lengths, ``nan`` for unknown) and ``dtype`` are
    required unless every block is a numpy array.
    """
    depth, level = 0, blocks
    while isinstance(level, list):
        if not level:
            raise ValueError("from_blocks: empty list of blocks")
        depth, level = depth + 1, level[0]

    def leaves(obj: Any, idx: tuple) -> Any:
        if len(idx) == depth:
            yield idx, obj
        else:
            if not isinstance(obj, list):
                raise ValueError(f"from_blocks: blocks are not nested {depth} deep at {idx}")
            for i, sub in enumerate(obj):
                yield from leaves(sub, (*idx, i))

    items = list(leaves(blocks, ()))
    all_numpy = all(isinstance(b, np.ndarray) for _, b in items)
    if chunks is None:
        if not all_numpy:
            raise ValueError("from_blocks: pass chunks= unless every block is a numpy array")
        chunks = _from_blocks_chunks(blocks, depth)
    if dtype is None:
        if not all_numpy:
            raise ValueError("from_blocks: pass dtype= unless every block is a numpy array")
        dtype = np.result_type(*[b.dtype for _, b in items])
    if len(chunks) != depth or any(len(c) != n for c, n in
                                   zip(chunks, _from_blocks_chunks_count(blocks, depth))):
        raise ValueError(f"from_blocks: chunks {chunks} do not match the block grid")
    parts = [getattr(b, "key", b) for _, b in items]
    name = name or f"from-blocks-{tokenize(parts, chunks, np.dtype(dtype))}"
    dsk: dict = {}
    for idx, b in items:
        dsk[(name, *idx)] = b if isinstance(b, (np.ndarray, tuple)) else (identity, b)
    return Array(dsk, name, tuple(tuple(c) for c in chunks), dtype)


def _from_blocks_chunks_count(blocks: Any, depth: int) -> list[int]:
    counts, level = [], blocks
    for _ in range(depth):
        counts.append(len(level))
        level = level[0]
    return counts


def full(shape: Any, fill_value: Any, chunks: Any = "auto", dtype: Any = None) -> Array:
    """An array of ``shape`` filled with ``fill_value``."""
    shape = _shape_tuple(shape)
    dtype = np.dtype(dtype) if dtype is not None else np.asarray(fill_value).dtype
    chunks = normalize_chunks(chunks, shape, dtype)
    name = f"full-{tokenize(shape, fill_value, chunks, dtype)}"
    dsk = {(name, *idx): (np.full, tuple(int(c[i]) for c, i in zip(chunks, idx)),
                          fill_value, dtype) for idx in _grid(chunks)}
    return Array(dsk, name, chunks, dtype)


def zeros(shape: Any, chunks: Any = "auto", dtype: Any = float) -> Array:
    """An array of zeros."""
    return full(shape, 0, chunks, dtype)


def ones(shape: Any, chunks: Any = "auto", dtype: Any = float) -> Array:
    """An array of ones."""
    return full(shape, 1, chunks, dtype)


def zeros_like(x: Array, dtype: Any = None) -> Array:
    """Zeros with the shape and chunks of ``x``."""
    return full(x.shape, 0, x.chunks, dtype or x.dtype)


def ones_like(x: Array, dtype: Any = None) -> Array:
    """Ones with the shape and chunks of ``x``."""
    return full(x.shape, 1, x.chunks, dtype or x.dtype)


def full_like(x: Array, fill_value: Any, dtype: Any = None) -> Array:
    """``fill_value`` with the shape and chunks of ``x``."""
    return full(x.shape, fill_value, x.chunks, dtype or x.dtype)


def _range_block(start: float, step: float, first: int, n: int, dtype: Any,
                 last: Any = None) -> np.ndarray:
    """Elements ``first .. first+n-1`` of ``start + i*step``; ``last`` overrides the final one."""
    out = np.arange(first, first + n, dtype=np.float64 if np.dtype(dtype).kind == "f"
                    else None) * step + start
    if last is not None and n:
        out[-1] = last
    return out.astype(dtype, copy=False)


def arange(*args: Any, chunks: Any = "auto", dtype: Any = None) -> Array:
    """Evenly spaced values in ``[start, stop)``: ``arange([start,] stop[, step])``."""
    if not 1 <= len(args) <= 3:
        raise TypeError(f"arange takes 1 to 3 positional arguments, got {len(args)}")
    start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if len(args) == 3 else 1)
    if step == 0:
        raise ValueError("arange: step must not be zero")
    ref = np.arange(start, stop, step, dtype=dtype)
    n = len(ref)
    chunks = normalize_chunks(chunks, (n,), ref.dtype)
    name = f"arange-{tokenize(start, stop, step, chunks, ref.dtype)}"
    dsk, first = {}, 0
    for i, length in enumerate(chunks[0]):
        dsk[(name, i)] = (_range_block, start, step, first, length, ref.dtype)
        first += length
    return Array(dsk, name, chunks, ref.dtype)


def linspace(start: float, stop: float, num: int = 50, endpoint: bool = True,
             chunks: Any = "auto", dtype: Any = None) -> Array:
    """``num`` evenly spaced values from ``start`` to ``stop`` (included if ``endpoint``)."""
    num = int(num)
    if num < 0:
        raise ValueError(f"linspace: number of samples {num} must be non-negative")
    div = (num - 1) if endpoint else num
    step = (stop - start) / div if div > 0 else 0.0
    dtype = np.dtype(dtype) if dtype is not None else np.result_type(start, stop, float(num))
    chunks = normalize_chunks(chunks, (num,), dtype)
    name = f"linspace-{tokenize(start, stop, num, endpoint, chunks, dtype)}"
    dsk, first = {}, 0
    for i, length in enumerate(chunks[0]):
        last = stop if endpoint and num > 1 and first + length == num else None
        dsk[(name, i)] = (_range_block, start, step, first, length, dtype, last)
        first += length
    return Array(dsk, name, chunks, dtype)

