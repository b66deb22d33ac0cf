"""The chunked :class:`Array`: a task graph plus the block grid it computes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from distml.array.chunks import _is_known, known, normalize_chunks

__all__ = ["Array", "assemble", "merge_graphs"]


def merge_graphs(*graphs: Mapping) -> dict:
    """One graph holding the tasks of all ``graphs`` (later ones win on equal keys)."""
    out: dict = {}
    for g in graphs:
        out.update(g)
    return out


def _nested_depth(obj: Any) -> int:
    depth = 0
    while isinstance(obj, list):
        depth += 1
        obj = obj[0]
    return depth


def assemble(blocks: Any) -> np.ndarray:
    """Concatenate a nested list of blocks (nesting = block grid) into one array."""
    depth = _nested_depth(blocks)
    if depth == 0:
        return np.asarray(blocks)
    flat: list[tuple[tuple[int, ...], np.ndarray]] = []

    def walk(obj: Any, index: tuple[int, ...]) -> None:
        if len(index) == depth:
            flat.append((index, np.asarray(obj)))
        else:
            for i, sub in enumerate(obj):
                walk(sub, (*index, i))

    walk(blocks, ())
    if len(flat) == 1:
        return flat[0][1]
    grid = [max(idx[a] for idx, _ in flat) + 1 for a in range(depth)]
    lengths = [[0] * n for n in grid]
    for idx, b in flat:
        if b.ndim != depth:
            raise ValueError(f"block {idx} has {b.ndim} dimensions, expected {depth}")
        for a in range(depth):
            lengths[a][idx[a]] = b.shape[a]
    starts = [list(itertools.accumulate([0, *ls])) for ls in lengths]
    dtype = np.result_type(*[b.dtype for _, b in flat])
    out = np.empty(tuple(s[-1] for s in starts), dtype=dtype)
    for idx, b in flat:
        out[tuple(slice(starts[a][i], starts[a][i] + b.shape[a])
                  for a, i in enumerate(idx))] = b
    return out


def _nested_keys(name: str, numblocks: tuple[int, ...], prefix: tuple[int, ...] = ()) -> Any:
    if len(prefix) == len(numblocks):
        return (name, *prefix)
    return [_nested_keys(name, numblocks, (*prefix, i)) for i in range(numblocks[len(prefix)])]


class Array:
    """An n-dimensional array split into blocks, each computed by a task of a graph.

    ``dsk`` maps keys to tasks; block ``(i, j, ...)`` has key ``(name, i, j, ...)``.
    ``chunks`` gives, per axis, the tuple of block lengths (``nan`` when unknown).
    """

    __array_priority__ = 20

    def __init__(self, dsk: Mapping, name: str, chunks: Any, dtype: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"array name must be a non-empty str, got {name!r}")
        if not isinstance(chunks, tuple) or not all(isinstance(c, tuple) for c in chunks):
            raise ValueError(f"chunks must be a tuple of tuples of block lengths, got {chunks!r}")
        self.chunks: tuple[tuple[float, ...], ...] = normalize_chunks(
            chunks, tuple(sum(c) for c in chunks))
        self.dask: dict = dsk if isinstance(dsk, dict) else dict(dsk)
        self.name = name
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self) -> tuple[float, ...]:
        return tuple(sum(c) if known((c,)) else float("nan") for c in self.chunks)

    @property
    def ndim(self) -> int:
        return len(self.chunks)

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.chunks)

    @property
    def npartitions(self) -> int:
        return math.prod(self.numblocks)

    @property
    def size(self) -> float:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> float:
        return self.size * self.dtype.itemsize

    @property
    def chunksize(self) -> tuple[float, ...]:
        return tuple(max(c) if known((c,)) else float("nan") for c in self.chunks)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d array")
        n = self.shape[0]
        if not _is_known(n):
            raise ValueError("the length of axis 0 is unknown; call compute_chunk_sizes()")
        return int(n)

    def __repr__(self) -> str:
        return (f"distml.array<{self.name.split('-')[0]}, shape={self.shape}, "
                f"dtype={self.dtype}, chunksize={self.chunksize}, tasks={len(self.dask)}>")

    # ------------------------------------------------------------------ collection protocol
    def __distml_keys__(self) -> Any:
        return _nested_keys(self.name, self.numblocks)

    def __distml_graph__(self) -> dict:
        from distml.array.optimize import optimize
        return optimize(self.dask, self.__distml_keys__())

    @staticmethod
    def __distml_finalize__(values: Any) -> np.ndarray:
        return assemble(values)

    def __distml_persist__(self, futures: Any) -> "Array":
        dsk: dict = {}

        def walk(keys: Any, futs: Any) -> None:
            if isinstance(keys, list):
                for k, f in zip(keys, futs):
                    walk(k, f)
            else:
                dsk[keys] = futs

        walk(self.__distml_keys__(), futures)
        return Array(dsk, self.name, self.chunks, self.dtype)

    def compute(self) -> np.ndarray:
        """Compute the array: on the default client if one is open, else in local threads."""
        from distml import default_client
        client = default_client()
        if client is not None:
            return client.compute(self, sync=True)
        from distml.local import get_threaded
        return assemble(get_threaded(self.__distml_graph__(), self.__distml_keys__()))

    def persist(self) -> "Array":
        """Compute the blocks and return an array built on them (futures on a cluster)."""
        from distml import default_client
        client = default_client()
        if client is not None:
            return client.persist(self)
        from distml.local import get_threaded
        return self.__distml_persist__(
            get_threaded(self.__distml_graph__(), self.__distml_keys__()))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.compute()
        return out.astype(dtype, copy=False) if dtype is not None else out

    def compute_chunk_sizes(self) -> "Array":
        """Compute unknown block lengths and store them in ``chunks`` (in place); returns self."""
        from distml.array.blockwise import map_blocks_shapes
        shapes = map_blocks_shapes(self)
        new = []
        for axis in range(self.ndim):
            index = [0] * self.ndim
            lengths = []
            for i in range(self.numblocks[axis]):
                index[axis] = i
                lengths.append(int(shapes[tuple(index)][axis]))
            new.append(tuple(lengths))
        self.chunks = tuple(new)
        return self

    # ------------------------------------------------------------------ conversions
    def astype(self, dtype: Any) -> "Array":
        """The array cast to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        from distml.array.elementwise import elemwise
        return elemwise(_astype, self, dtype=dtype, name="astype", extra=(dtype.str,))

    def copy(self) -> "Array":
        """A copy (arrays are immutable, so this shares the graph)."""
        return Array(self.dask, self.name, self.chunks, self.dtype)

    @property
    def T(self) -> "Array":
        return self.transpose()

    def transpose(self, *axes: Any) -> "Array":
        from distml.array.linalg import transpose
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return transpose(self, axes or None)

    def rechunk(self, chunks: Any) -> "Array":
        from distml.array.rechunk import rechunk
        return rechunk(self, chunks)

    def map_blocks(self, func: Any, *args: Any, **kwargs: Any) -> "Array":
        from distml.array.blockwise import map_blocks
        return map_blocks(func, self, *args, **kwargs)

    def __getitem__(self, index: Any) -> "Array":
        from distml.array.slicing import getitem
        return getitem(self, index)

    # ------------------------------------------------------------------ operators
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from distml.array.elementwise import apply_ufunc
        return apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: tuple, args: tuple, kwargs: dict) -> Any:
        from distml.array.dispatch import array_function
        return array_function(func, types, args, kwargs)

    def __matmul__(self, other: Any) -> "Array":
        from distml.array.linalg import matmul
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Array":
        from distml.array.linalg import matmul
        return matmul(other, self)

    def dot(self, other: Any) -> "Array":
        from distml.array.linalg import dot
        return dot(self, other)

    def __abs__(self) -> "Array":
        return np.abs(self)

    def __neg__(self) -> "Array":
        return np.negative(self)

    def __pos__(self) -> "Array":
        return np.positive(self)

    def __invert__(self) -> "Array":
        return np.invert(self)

    # ------------------------------------------------------------------ reductions
    def sum(self, axis: Any = None, dtype: Any = None, keepdims: bool = False,
            split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.sum(self, axis, dtype=dtype, keepdims=keepdims,
                              split_every=split_every, out=out)

    def prod(self, axis: Any = None, dtype: Any = None, keepdims: bool = False,
             split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.prod(self, axis, dtype=dtype, keepdims=keepdims,
                               split_every=split_every, out=out)

    def mean(self, axis: Any = None, dtype: Any = None, keepdims: bool = False,
             split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.mean(self, axis, dtype=dtype, keepdims=keepdims,
                               split_every=split_every, out=out)

    def var(self, axis: Any = None, dtype: Any = None, ddof: int = 0, keepdims: bool = False,
            split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.var(self, axis, dtype=dtype, ddof=ddof, keepdims=keepdims,
                              split_every=split_every, out=out)

    def std(self, axis: Any = None, dtype: Any = None, ddof: int = 0, keepdims: bool = False,
            split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.std(self, axis, dtype=dtype, ddof=ddof, keepdims=keepdims,
                              split_every=split_every, out=out)

    def min(self, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
            out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.min(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def max(self, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
            out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.max(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def any(self, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
            out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.any(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def all(self, axis: Any = None, keepdims: bool = False, split_every: int | None = None,
            out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.all(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def argmin(self, axis: int | None = None, keepdims: bool = False,
               split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.argmin(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def argmax(self, axis: int | None = None, keepdims: bool = False,
               split_every: int | None = None, out: None = None) -> "Array":
        from distml.array import reductions
        return reductions.argmax(self, axis, keepdims=keepdims, split_every=split_every, out=out)

    def clip(self, min: Any = None, max: Any = None) -> "Array":
        from distml.array.elementwise import clip
        return clip(self, min, max)


def _astype(block: np.ndarray, dtype: Any) -> np.ndarray:
    return block.astype(dtype)


def _binary(ufunc: np.ufunc, reflected: bool = False) -> Any:
    if reflected:
        def op(self: Array, other: Any) -> Array:
            return ufunc(other, self)
    else:
        def op(self: Array, other: Any) -> Array:
            return ufunc(self, other)
    return op


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                      ("mod", np.remainder), ("pow", np.power), ("and", np.bitwise_and),
                      ("or", np.bitwise_or), ("xor", np.bitwise_xor), ("lshift", np.left_shift),
                      ("rshift", np.right_shift)]:
    setattr(Array, f"__{_name}__", _binary(_ufunc))
    setattr(Array, f"__r{_name}__", _binary(_ufunc, reflected=True))
for _name, _ufunc in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(Array, f"__{_name}__", _binary(_ufunc))
Array.__hash__ = None  # type: ignore[assignment]
