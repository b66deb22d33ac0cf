"""Random arrays generated block by block on the workers, reproducibly.

Block ``(i, j, ...)`` draws from ``np.random.default_rng(SeedSequence(seed, spawn_key=(i, j,
...)))``, so an array depends only on the seed and the chunks, never on where or in which
order its blocks run.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import numpy as np

from distml.array.chunks import normalize_chunks, tokenize
from distml.array.core import Array
from distml.array.creation import _shape_tuple

__all__ = ["random", "normal", "randint", "uniform"]


def _draw(method: str, seed: int, index: tuple[int, ...], shape: tuple[int, ...],
          args: tuple, dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=index))
    if method == "integers":
        return rng.integers(*args, size=shape, dtype=dtype)
    return getattr(rng, method)(*args, size=shape).astype(dtype, copy=False)


def _make(method: str, args: tuple, size: Any, chunks: Any, seed: int | None,
          dtype: Any) -> Array:
    shape = _shape_tuple(size)
    if seed is None:
        seed = secrets.randbits(64)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    dtype = np.dtype(dtype)
    chunks = normalize_chunks(chunks, shape, dtype)
    name = f"{method}-{tokenize(method, args, shape, chunks, int(seed), dtype)}"
    dsk = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        block_shape = tuple(int(c[i]) for c, i in zip(chunks, idx))
        dsk[(name, *idx)] = (_draw, method, int(seed), idx, block_shape, args, dtype)
    return Array(dsk, name, chunks, dtype)


def random(size: Any, chunks: Any = "auto", seed: int | None = None) -> Array:
    """Uniform floats in ``[0, 1)``."""
    return _make("random", (), size, chunks, seed, np.float64)


def uniform(low: float = 0.0, high: float = 1.0, size: Any = (), chunks: Any = "auto",
            seed: int | None = None) -> Array:
    """Uniform floats in ``[low, high)``."""
    return _make("uniform", (low, high), size, chunks, seed, np.float64)


def normal(loc: float = 0.0, scale: float = 1.0, size: Any = (), chunks: Any = "auto",
           seed: int | None = None) -> Array:
    """Normally distributed floats."""
    return _make("normal", (loc, scale), size, chunks, seed, np.float64)


def randint(low: int, high: int | None = None, size: Any = (), chunks: Any = "auto",
            seed: int | None = None, dtype: Any = np.int64) -> Array:
    """Random integers in ``[low, high)`` (``[0, low)`` when ``high`` is None)."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    return _make("integers", (int(low), int(high)), size, chunks, seed, dtype)
