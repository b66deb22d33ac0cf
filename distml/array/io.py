"""Reading and writing ``.npy`` files block by block, on the workers.

Both directions move no array data through the client: each block task memory-maps the
file and reads or writes its own slice (the file must be visible to every worker).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np

from distml.array.chunks import block_slices, known, normalize_chunks, tokenize
from distml.array.core import Array

__all__ = ["from_npy", "to_npy"]


def _read_block(path: str, index: tuple) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[index])


def from_npy(path: str | os.PathLike, chunks: Any = "auto") -> Array:
    """A lazy array over the ``.npy`` file at ``path``; blocks are read where they run."""
    path = os.fspath(os.path.abspath(path))
    data = np.load(path, mmap_mode="r")
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{path} does not hold a single numpy array")
    chunks = normalize_chunks(chunks, data.shape, data.dtype)
    stat = os.stat(path)
    name = f"from-npy-{tokenize(path, stat.st_mtime_ns, stat.st_size, chunks)}"
    dsk = {(name, *idx): (_read_block, path, block_slices(chunks, idx))
           for idx in itertools.product(*(range(len(c)) for c in chunks))}
    return Array(dsk, name, chunks, data.dtype)


def _write_block(block: np.ndarray, path: str, index: tuple) -> int:
    out = np.load(path, mmap_mode="r+")
    out[index] = block
    out.flush()
    del out
    return int(block.size)


def _total(*counts: int) -> int:
    return sum(counts)


def to_npy(path: str | os.PathLike, x: Array) -> None:
    """Write ``x`` to the ``.npy`` file ``path``; every block task writes its own slice."""
    if not known(x.chunks):
        raise ValueError("to_npy needs known chunk sizes; call compute_chunk_sizes() first")
    path = os.fspath(os.path.abspath(path))
    header = np.lib.format.open_memmap(path, mode="w+", dtype=x.dtype,
                                       shape=tuple(int(n) for n in x.shape))
    del header
    name = f"to-npy-{tokenize(path, x)}"
    dsk = dict(x.dask)
    keys = []
    for idx in itertools.product(*(range(len(c)) for c in x.chunks)):
        key = (name, *idx)
        dsk[key] = (_write_block, (x.name, *idx), path, block_slices(x.chunks, idx))
        keys.append(key)
    done = Array({**dsk, (name + "-total",): (_total, *keys)}, name + "-total", (), np.int64)
    written = int(done.compute())
    if written != x.size:
        raise RuntimeError(f"to_npy wrote {written} elements of {x.size}")
