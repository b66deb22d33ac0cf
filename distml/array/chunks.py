"""Chunk bookkeeping: normalizing chunk specifications, offsets, block slices, tokens."""

from __future__ import annotations

import functools
import itertools
import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import xxhash

__all__ = ["normalize_chunks", "tokenize", "chunks_equal", "block_slices", "common_chunks"]

AUTO_BLOCK_BYTES = 128 * 2**20


def _hash_part(h: "xxhash.xxh3_128", obj: Any) -> None:
    """Feed a canonical description of ``obj`` to the hash ``h``."""
    name = getattr(obj, "name", None)
    if hasattr(obj, "__distml_graph__") and isinstance(name, str):
        h.update(b"array:" + name.encode())
    elif isinstance(obj, np.memmap) and obj.filename:
        h.update(f"memmap:{obj.filename}:{obj.offset}:{obj.shape}:{obj.dtype}".encode())
    elif isinstance(obj, np.ndarray):
        h.update(f"ndarray:{obj.shape}:{obj.dtype.str}:".encode())
        h.update(np.ascontiguousarray(obj).view(np.uint8).reshape(-1).data)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}]".encode())
        for item in obj:
            _hash_part(h, item)
    elif isinstance(obj, dict):
        h.update(b"dict")
        for k in sorted(obj, key=repr):
            _hash_part(h, k)
            _hash_part(h, obj[k])
    elif isinstance(obj, functools.partial):
        h.update(b"partial")
        _hash_part(h, obj.func)
        _hash_part(h, obj.args)
        _hash_part(h, obj.keywords)
    elif callable(obj) and hasattr(obj, "__qualname__"):
        h.update(f"func:{getattr(obj, '__module__', '')}.{obj.__qualname__}".encode())
    elif obj is None or isinstance(obj, (str, bytes, int, float, complex, bool, slice,
                                         np.generic, np.dtype, type(Ellipsis))):
        h.update(f"{type(obj).__name__}:{obj!r}".encode())
    else:  # an object we cannot describe: never equal to another
        h.update(f"unique:{uuid.uuid4().hex}".encode())


def tokenize(*args: Any) -> str:
    """A deterministic 32-hex-digit token of ``args`` (array names, data, parameters)."""
    h = xxhash.xxh3_128()
    for a in args:
        _hash_part(h, a)
    return h.hexdigest()


def _is_known(n: float) -> bool:
    return not (isinstance(n, float) and math.isnan(n))


def _regular(size: int, step: int) -> tuple[int, ...]:
    if size == 0:
        return (0,)
    full, rest = divmod(size, step)
    return (step,) * full + ((rest,) if rest else ())


def _auto_chunks(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """Chunk sizes giving blocks of about AUTO_BLOCK_BYTES with similar extent on each axis."""
    n_items = max(1, AUTO_BLOCK_BYTES // max(1, itemsize))
    sizes = [max(1, int(s)) for s in shape]
    if math.prod(sizes) <= n_items:
        return tuple(sizes)
    out = list(sizes)
    free = list(range(len(sizes)))
    budget = float(n_items)
    while free:  # axes shorter than the even share keep their full length
        share = budget ** (1 / len(free))
        small = [a for a in free if sizes[a] <= share]
        if not small:
            for a in free:
                out[a] = max(1, int(share))
            break
        for a in small:
            budget /= sizes[a]
            free.remove(a)
    return tuple(out)


def normalize_chunks(chunks: Any, shape: Sequence[float], dtype: Any = np.float64,
                     previous: tuple | None = None) -> tuple[tuple[float, ...], ...]:
    """Turn a chunk specification into a tuple (one per axis) of tuples of block lengths.

    Accepted: an int (the same block length on every axis), ``"auto"``, or a sequence with
    one entry per axis, each an int, ``-1``/``None`` (the whole axis), ``"auto"`` or a tuple
    of block lengths summing to the axis length.  A dict ``{axis: spec}`` changes only those
    axes of ``previous`` (for rechunking).
    """
    shape = tuple(shape)
    ndim = len(shape)
    if isinstance(chunks, dict):
        if previous is None:
            raise ValueError("a dict of chunks needs existing chunks to update")
        bad = [a for a in chunks if not isinstance(a, int) or not -ndim <= a < ndim]
        if bad:
            raise ValueError(f"chunks dict has invalid axes {bad} for {ndim}-d array")
        fixed = {a % ndim: v for a, v in chunks.items()}
        chunks = tuple(fixed.get(a, previous[a]) for a in range(ndim))
    if isinstance(chunks, (int, np.integer)) or chunks == "auto" or chunks is None:
        chunks = (chunks,) * ndim
    if not isinstance(chunks, (tuple, list)):
        raise ValueError(f"invalid chunks {chunks!r}: expected int, 'auto', tuple or dict")
    if len(chunks) != ndim:
        raise ValueError(f"chunks {chunks!r} have {len(chunks)} entries for an array with "
                         f"{ndim} dimensions (shape {shape})")
    itemsize = np.dtype(dtype).itemsize
    auto_axes = [a for a, c in enumerate(chunks) if isinstance(c, str)]
    for a in auto_axes:
        if chunks[a] != "auto":
            raise ValueError(f"invalid chunks {chunks[a]!r} on axis {a}")
    if auto_axes:
        fixed_items = math.prod(
            int(c) if isinstance(c, (int, np.integer)) and c > 0 else
            (max(c) if isinstance(c, (tuple, list)) and c else max(1, int(shape[a])))
            for a, c in enumerate(chunks) if a not in auto_axes)
        sub = _auto_chunks([shape[a] for a in auto_axes], itemsize * max(1, fixed_items))
        chunks = list(chunks)
        for a, size in zip(auto_axes, sub):
            chunks[a] = size
    out = []
    for axis, (c, n) in enumerate(zip(chunks, shape)):
        if isinstance(c, (tuple, list)):
            c = tuple(float(b) if not _is_known(b) else int(b) for b in c)
            if any(_is_known(b) and b < 0 for b in c) or not c:
                raise ValueError(f"invalid chunks {c} on axis {axis}: block lengths must be "
                                 f"non-negative and at least one block")
            if all(_is_known(b) for b in c) and _is_known(n) and sum(c) != n:
                raise ValueError(f"chunks {c} on axis {axis} sum to {sum(c)}, but the axis "
                                 f"has length {n}")
            out.append(c)
            continue
        if not _is_known(n):
            raise ValueError(f"axis {axis} has unknown length; give its chunks as a tuple")
        if c is None or c == -1:
            out.append((int(n),))
        elif isinstance(c, (int, np.integer)) and c > 0:
            out.append(_regular(int(n), int(c)))
        else:
            raise ValueError(f"invalid chunk size {c!r} on axis {axis}: use a positive int, "
                             f"-1, 'auto' or a tuple of block lengths")
    return tuple(out)


def chunks_equal(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two per-axis chunk tuples are equal, treating unknown (nan) lengths as equal."""
    return len(a) == len(b) and all(
        x == y or (not _is_known(x) and not _is_known(y)) for x, y in zip(a, b))


def offsets(chunks_1d: Sequence[int]) -> list[int]:
    """Start offset of each block along one axis, plus the axis length at the end."""
    return [0, *itertools.accumulate(chunks_1d)]


def block_slices(chunks: tuple[tuple[int, ...], ...], index: Sequence[int]) -> tuple[slice, ...]:
    """The slices selecting block ``index`` from the whole array."""
    out = []
    for c, i in zip(chunks, index):
        start = sum(c[:i])
        out.append(slice(start, start + c[i]))
    return tuple(out)


def common_chunks(*chunks_1d: Sequence[int]) -> tuple[int, ...]:
    """The coarsest chunking of one axis whose boundaries include every input's boundaries."""
    bounds = sorted(set().union(*(offsets(c) for c in chunks_1d)))
    out = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    return out or (0,)


def known(chunks: tuple[tuple[float, ...], ...]) -> bool:
    """Whether every block length is known."""
    return all(_is_known(b) for c in chunks for b in c)
