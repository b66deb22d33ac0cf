"""Input handling shared by the estimators: chunked or in-memory data as row blocks.

The estimators see their training data as a :class:`RowBlocks`: aligned row blocks of
several arrays (say ``X``, ``y`` and ``sample_weight``), held on the workers as futures
when a client is open and the input is chunked, else as numpy arrays in this process.
``RowBlocks.map`` runs one task per block and ``RowBlocks.reduce`` tree-combines the
per-block results, so only small summaries (gradients, sums) ever reach the client;
:func:`map_grouped` runs a pass that is repeated many times (an SGD epoch, an L-BFGS
evaluation) as one task per worker thread over the blocks it holds, planned once by
:func:`plan_groups`.

Typical use::

    blocks = row_blocks(X, y, sample_weight)      # validated, aligned, persisted
    total = blocks.reduce(_block_sum, coef)       # func(Xb, yb, wb, coef) per block
    y_pred = apply_rows(_predict_block, X, coef)  # Array for Array input, numpy for numpy
"""

from __future__ import annotations

import numbers
import operator
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from distml.array import Array, from_array, map_blocks

__all__ = ["RowBlocks", "Workers", "aligned", "apply_rows", "as_chunked",
           "check_finite_arrays", "check_sample_weight",
           "check_weight_sum", "is_chunked", "map_grouped", "nonfinite_counts",
           "plan_groups", "raise_nonfinite", "row_blocks", "scratch", "tree_combine"]

#: How many partial results one combining task merges.
SPLIT_EVERY = 8

#: At most this fraction of a worker's memory limit, shared by its threads, is taken by the
#: input blocks of one grouped task (see :func:`plan_groups`: the blocks of a task are all
#: loaded while it runs, so a worker's blocks are split into several tasks when they would
#: not fit, as with data spilled to disk).
TASK_MEMORY_FRACTION = 0.05


def is_chunked(obj: Any) -> bool:
    """True for a ``distml.array.Array`` or a partitioned table (anything with ``to_array``)."""
    return isinstance(obj, Array) or (hasattr(obj, "to_array")
                                      and hasattr(obj, "__distml_graph__"))


def as_chunked(obj: Any) -> Array:
    """``obj`` as a ``distml.array.Array`` (tables via ``.to_array()``, one block per partition)."""
    if isinstance(obj, Array):
        return obj
    if is_chunked(obj):
        return obj.to_array()
    raise TypeError(f"expected a distml Array or table, got {type(obj).__name__}")


def _client() -> Any:
    from distml import default_client
    return default_client()


def _combine_all(combine: Callable, *parts: Any) -> Any:
    out = parts[0]
    for p in parts[1:]:
        out = combine(out, p)
    return out


def tree_combine(client: Any, parts: list, combine: Callable = operator.add,
                 split_every: int = SPLIT_EVERY) -> Any:
    """Combine ``parts`` (futures on ``client``, or local values when it is None) pairwise in a
    tree of tasks with fan-in ``split_every``; returns the combined value, gathered."""
    if not parts:
        raise ValueError("nothing to combine")
    if client is None:
        return _combine_all(combine, *parts)
    while len(parts) > 1:
        parts = [client.submit(_combine_all, combine, *parts[i:i + split_every], pure=False)
                 for i in range(0, len(parts), split_every)]
    return client.gather(parts[0])


_blas_limited = False


def _on_worker(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` in a worker process with BLAS limited to one thread (set once per process):
    the worker's task threads are the parallelism, and idle-spinning BLAS threads of several
    worker processes on the same cores would otherwise slow every matrix product down."""
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1, user_api="blas")
        _blas_limited = True
    return func(*args, **kwargs)


def aligned(a: Any) -> Any:
    """``a``, or a copy of it when its data is not aligned for its dtype.

    numpy computes products of misaligned arrays with its own loops instead of BLAS, which
    round differently, so a block's result would depend on where its bytes sit.  Blocks
    that crossed the wire arrive 64-byte aligned (:mod:`distml.protocol.buffers`; no
    misaligned block among 4,335 calls on distml-delivered data), so on a cluster this is a
    flag test; it still matters for the user's own arrays trained on local threads (a field
    of a packed structured array, ``np.frombuffer`` at an odd offset), which would otherwise
    give other bits than the same data on a cluster.
    """
    return a if a is None or a.flags.aligned else a.copy()


class Workers:
    """Threads and memory limit of each worker, read once per fit (one scheduler query)."""

    def __init__(self, nthreads: dict[str, int], memory_limit: dict[str, int]) -> None:
        self.nthreads = nthreads
        self.memory_limit = memory_limit

    @classmethod
    def of(cls, client: Any) -> "Workers":
        if client is None:
            return cls({"": os.cpu_count() or 1}, {"": 0})
        info = client.scheduler_info()["workers"]
        return cls({a: int(w["nthreads"]) for a, w in info.items()},
                   {a: int(w.get("memory_limit") or 0) for a, w in info.items()})


def _task_groups(metas: Sequence[tuple], holders: Sequence[str], workers: Workers,
                 block_bytes: Sequence[int]) -> list[list[tuple]]:
    """Blocks (``metas``, held by ``holders``) grouped into tasks: each worker's blocks dealt
    to its threads, a thread's share cut where its input would exceed
    :data:`TASK_MEMORY_FRACTION` of the worker's memory limit divided by its threads."""
    by_worker: dict[str, list[tuple]] = {}
    for meta, holder in zip(metas, holders):
        by_worker.setdefault(holder, []).append(meta)
    groups = []
    for worker, group in by_worker.items():
        if worker in workers.nthreads:
            lanes, share = workers.nthreads[worker], workers.memory_limit[worker]
        else:  # blocks no worker holds (lost with one): any thread, the smallest share
            lanes = sum(workers.nthreads.values())
            share = min(workers.memory_limit.values(), default=0)
        budget = share * TASK_MEMORY_FRACTION / max(1, workers.nthreads.get(
            worker, max(workers.nthreads.values(), default=1)))
        lanes = max(1, min(lanes, len(group)))
        for lane in (group[i::lanes] for i in range(lanes)):
            current, size = [], 0
            for meta in lane:
                nbytes = block_bytes[meta[0]]
                if current and budget and size + nbytes > budget:
                    groups.append(current)
                    current, size = [], 0
                current.append(meta)
                size += nbytes
            groups.append(current)
    return groups


_task_local = threading.local()


def scratch(rows: int, row_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised ``(rows, *row_shape)`` array that the blocks of one
    :func:`map_grouped` task share (the next block overwrites it).

    A fresh block-sized array costs its page faults and the kernel's zeroing on first write
    (about 4 ms for 40 MB, a third of a row gather into it); reusing one buffer per task pays
    that once.  Outside a grouped task this is a plain ``np.empty``.
    """
    pool = getattr(_task_local, "scratch", None)
    if pool is None:
        return np.empty((rows, *row_shape), dtype)
    key = (tuple(row_shape), np.dtype(dtype).str)
    if key not in pool or len(pool[key]) < rows:
        pool.clear()  # one buffer at a time, as large as the largest block so far
        pool[key] = np.empty((rows, *row_shape), dtype)
    return pool[key][:rows]


def _apply_each(func: Callable, metas: list[tuple], args: tuple, width: int,
                *flat: Any) -> list:
    _task_local.scratch = {}
    try:
        return [func(meta, *flat[width * i:width * (i + 1)], *args)
                for i, meta in enumerate(metas)]
    finally:
        _task_local.scratch = None  # the buffer lives as long as the task


def plan_groups(blocks: "RowBlocks", workers: Workers, metas: Sequence[tuple],
                row_bytes: int) -> list[list[tuple]]:
    """The tasks :func:`map_grouped` runs the blocks ``meta[0]`` of ``metas`` in: on a
    cluster one per worker thread over the blocks that worker holds (``Client.who_has``, one
    query), split by memory (see :func:`_task_groups`; ``row_bytes`` estimates a row of all
    the parts); without a client one per block (local threads).  A plan stays valid when
    blocks move or a worker dies: its tasks then read some blocks from elsewhere, with the
    same results."""
    ordered = sorted(metas, key=lambda m: m[0])
    client = blocks.client
    if client is None:
        return [[meta] for meta in ordered]
    first = [blocks.parts[m[0]][0] for m in ordered]
    who = client.who_has(first)
    holders = [(who.get(f.key) or [""])[0] for f in first]
    return _task_groups(ordered, holders, workers, [n * row_bytes for n in blocks.lengths])


def map_grouped(blocks: "RowBlocks", groups: list[list[tuple]], func: Callable,
                *args: Any) -> list:
    """``func(meta, *block_parts, *args)`` for the block ``meta[0]`` of every ``meta`` in
    ``groups`` (from :func:`plan_groups`), one task per group: one round trip per call
    instead of a task (and a tree of combining tasks) per block.  Returns the results in
    ascending block order, whichever task made them, so that callers summing them get the
    same bits whatever the placement."""
    width = len(blocks.parts[0])
    client = blocks.client
    if client is None:
        def run(group: list[tuple]) -> list:
            flat = [p for m in group for p in blocks.parts[m[0]]]
            return _apply_each(func, group, args, width, *flat)
        if len(groups) == 1:
            outputs = [run(groups[0])]
        else:
            with ThreadPoolExecutor(min(len(groups), os.cpu_count() or 1)) as pool:
                outputs = list(pool.map(run, groups))
    else:
        futures = [client.submit(_on_worker, _apply_each, func, group, args, width,
                                 *[p for m in group for p in blocks.parts[m[0]]], pure=False)
                   for group in groups]
        outputs = client.gather(futures)
    by_index = {m[0]: r for group, rs in zip(groups, outputs) for m, r in zip(group, rs)}
    return [by_index[i] for i in sorted(by_index)]


class RowBlocks:
    """Aligned row blocks of several arrays, ready for one-task-per-block work.

    ``parts[i]`` is the tuple of block ``i`` of every array (``None`` for an absent array);
    entries are futures when ``client`` is set, numpy arrays otherwise.  ``lengths`` gives
    the rows per block.
    """

    def __init__(self, parts: list[tuple], lengths: Sequence[int], client: Any = None) -> None:
        self.parts = parts
        self.lengths = [int(n) for n in lengths]
        self.client = client

    @property
    def n_samples(self) -> int:
        return sum(self.lengths)

    @property
    def nblocks(self) -> int:
        return len(self.parts)

    def map(self, func: Callable, *args: Any, **kwargs: Any) -> list:
        """``func(*block_parts, *args, **kwargs)`` for every block: futures on a cluster, else
        values (computed on a thread pool when there are several blocks)."""
        if self.client is not None:
            columns = [list(c) for c in zip(*self.parts)]
            extra = [[a] * self.nblocks for a in args]
            return self.client.map(_on_worker, [func] * self.nblocks, *columns, *extra,
                                   pure=False, **kwargs)
        if self.nblocks == 1:
            return [func(*self.parts[0], *args, **kwargs)]
        with ThreadPoolExecutor(max_workers=min(self.nblocks, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda p: func(*p, *args, **kwargs), self.parts))

    def reduce(self, func: Callable, *args: Any, combine: Callable = operator.add,
               split_every: int = SPLIT_EVERY, **kwargs: Any) -> Any:
        """:meth:`map` then :func:`tree_combine` the results; returns the combined value."""
        return tree_combine(self.client, self.map(func, *args, **kwargs), combine, split_every)


def check_sample_weight(sample_weight: Any, n_samples: int) -> Any:
    """Numpy ``sample_weight`` as a float64 vector of length ``n_samples`` (a number is
    repeated); chunked weights pass through (check their sum after reducing)."""
    if sample_weight is None or is_chunked(sample_weight):
        return sample_weight
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, float(sample_weight))
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n_samples,)}!")
    if not np.all(np.isfinite(sw)):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if not np.any(sw):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sw


def check_weight_sum(total: Any) -> None:
    """Raise scikit-learn's ``ValueError`` when the summed sample weights are all zero."""
    if not np.any(total):
        raise ValueError("Sample weights must contain at least one non-zero number.")


def _inconsistent(lengths: list[int]) -> ValueError:
    return ValueError("Found input variables with inconsistent numbers of samples: "
                      f"{[int(n) for n in lengths]}")


def _row_chunks(arrays: list[Array]) -> tuple[int, ...]:
    for a in arrays:
        if any(isinstance(c, float) for c in a.chunks[0]):
            a.compute_chunk_sizes()
    lengths = [int(a.shape[0]) for a in arrays]
    if len(set(lengths)) > 1:
        raise _inconsistent(lengths)
    return tuple(int(c) for c in arrays[0].chunks[0])


def _align(obj: Any, rows: tuple[int, ...], name: str) -> Array:
    """``obj`` as an Array with row chunks ``rows`` and one chunk along the other axes."""
    arr = as_chunked(obj) if is_chunked(obj) else from_array(
        np.asarray(obj), chunks=(rows, *np.shape(obj)[1:]))
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got {arr.ndim} dimensions")
    target = (rows, *[(int(n),) for n in arr.shape[1:]])
    return arr.rechunk(target)


def _block_keys(arr: Array) -> list:
    return [(arr.name, i, *([0] * (arr.ndim - 1))) for i in range(arr.numblocks[0])]


def row_blocks(*arrays: Any, min_samples: int = 1) -> RowBlocks:
    """Validate lengths, align and persist ``arrays`` (``None`` entries allowed) as row blocks.

    The first array sets the row chunks; the others are rechunked (or, for numpy, split) to
    match, and trailing axes are made one chunk.  Numpy-only input gives one local block.
    Chunked input is persisted once: on the workers when a client is open, else in this
    process.  Raises ``ValueError`` for inconsistent lengths or too few samples.
    """
    present = [a for a in arrays if a is not None]
    if not any(is_chunked(a) for a in present):
        lengths = [len(a) for a in present]
        if len(set(lengths)) > 1:
            raise _inconsistent(lengths)
        if lengths and lengths[0] < min_samples:
            raise ValueError(f"Found array with {lengths[0]} sample(s) while a minimum of "
                             f"{min_samples} is required.")
        return RowBlocks([tuple(None if a is None else np.asarray(a) for a in arrays)],
                         lengths[:1] or [0])
    chunked = [as_chunked(a) for a in present if is_chunked(a)]
    rows = _row_chunks(chunked)
    lengths = [sum(rows)] + [len(a) for a in present if not is_chunked(a)]
    if len(set(lengths)) > 1:
        raise _inconsistent(lengths)
    if lengths[0] < min_samples:
        raise ValueError(f"Found array with {lengths[0]} sample(s) while a minimum of "
                         f"{min_samples} is required.")
    aligned = [None if a is None else _align(a, rows, f"input {i}")
               for i, a in enumerate(arrays)]
    client = _client()
    live = [a for a in aligned if a is not None]
    persisted = iter(client.persist(live) if client is not None else [a.persist() for a in live])
    keyed = []
    for a in aligned:
        if a is None:
            keyed.append([None] * len(rows))
        else:
            p = next(persisted)
            keyed.append([p.dask[k] for k in _block_keys(p)])
    keep = [i for i, n in enumerate(rows) if n > 0] or [0]
    parts = [tuple(col[i] for col in keyed) for i in keep]
    return RowBlocks(parts, [rows[i] for i in keep], client)


def nonfinite_counts(*blocks: Any) -> np.ndarray:
    """``[NaN count, infinity count]`` of each floating array (``None`` counts nothing)."""
    out = np.zeros((len(blocks), 2), dtype=np.int64)
    for i, b in enumerate(blocks):
        if b is not None and b.dtype.kind in "fc" and not np.isfinite(np.sum(b)):
            nan = int(np.isnan(b).sum())
            out[i] = nan, int((~np.isfinite(b)).sum()) - nan
    return out


def raise_nonfinite(counts: np.ndarray, names: Sequence[str]) -> None:
    """Raise scikit-learn's ``ValueError`` for the first array ``counts`` finds NaN or
    infinity in (``names[i]`` names the ``i``-th array)."""
    for name, (nan, inf) in zip(names, counts):
        if nan:
            raise ValueError(f"Input {name} contains NaN.")
        if inf:
            raise ValueError(f"Input {name} contains infinity or a value too large for "
                             "dtype('float64').")


def check_finite_arrays(arrays: Sequence[Any], names: Sequence[str]) -> None:
    """Raise scikit-learn's ``ValueError`` if one of a block's floating arrays holds NaN or
    infinity; called inside a task that reads the block anyway (no separate pass over the
    data)."""
    raise_nonfinite(nonfinite_counts(*arrays), names)


def apply_rows(func: Callable, X: Any, *args: Any, n_out: int | None = None,
               dtype: Any = np.float64) -> Any:
    """``func(X_rows, *args)`` on every row block: an Array (rows chunked like ``X``) for
    chunked ``X``, a numpy array for numpy ``X``.  The result is 1-D when ``n_out`` is None,
    else has ``n_out`` columns."""
    if not is_chunked(X):
        return func(X, *args)
    arr = as_chunked(X)
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead.")
    arr = arr.rechunk((arr.chunks[0], (int(arr.shape[1]),)))
    if n_out is None:
        return map_blocks(func, arr, *args, dtype=dtype, drop_axis=1)
    return map_blocks(func, arr, *args, dtype=dtype, chunks=(arr.chunks[0], (n_out,)))
