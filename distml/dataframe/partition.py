"""Splitting pandas objects into partitions, and changing the number of partitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from distml.dataframe import methods
from distml.dataframe.core import DataFrame, Series, _Frame
from distml.dataframe.scheduling import new_name


def check_npartitions(npartitions: Any) -> int:
    """``npartitions`` as an int, or ValueError if it is not a positive integer."""
    if isinstance(npartitions, bool) or not isinstance(npartitions, (int, np.integer)) \
            or npartitions <= 0:
        raise ValueError(f"npartitions must be a positive integer, got {npartitions!r}")
    return int(npartitions)


def _bounds(total: int, parts: int) -> list[int]:
    """Row positions that cut ``total`` rows into ``parts`` near-equal consecutive ranges."""
    return [i * total // parts for i in range(parts + 1)]


def _sorted_bounds(index: pd.Index, bounds: list[int]) -> tuple[list[int], tuple | None]:
    """Bounds moved so that equal labels of a sorted index share a partition, and the
    divisions; the bounds unchanged and None when the index is not sorted (or a partition
    would be empty)."""
    if not len(index) or not index.is_monotonic_increasing or index.hasnans:
        return bounds, None
    moved = [0]
    for b in bounds[1:-1]:
        b = max(b, moved[-1])
        while 0 < b < len(index) and index[b] == index[b - 1]:
            b += 1
        moved.append(b)
    moved.append(len(index))
    if any(hi <= lo for lo, hi in zip(moved[:-1], moved[1:])):
        return bounds, None
    return moved, (*[index[b] for b in moved[:-1]], index[-1])


def from_pandas(data: pd.DataFrame | pd.Series, npartitions: int = 1) -> "DataFrame | Series":
    """Split a pandas DataFrame or Series by rows into ``npartitions`` near-equal partitions.

    The index is kept.  When it is sorted the divisions are known, and rows with equal
    labels stay in one partition.  With fewer rows than partitions some partitions are
    empty (and the divisions unknown).
    """
    if not isinstance(data, (pd.DataFrame, pd.Series)):
        raise TypeError(f"from_pandas needs a pandas DataFrame or Series, "
                        f"not {type(data).__name__}")
    n = check_npartitions(npartitions)
    bounds, divisions = _sorted_bounds(data.index, _bounds(len(data), n))
    name = new_name("from-pandas")
    graph = {(name, i): data.iloc[bounds[i]:bounds[i + 1]] for i in range(n)}
    lengths = tuple(np.diff(bounds).tolist())
    cls = DataFrame if isinstance(data, pd.DataFrame) else Series
    return cls(graph, name, data.iloc[:0], n, lengths, divisions)


def repartition(frame: _Frame, npartitions: int) -> _Frame:
    """The rows of ``frame``, in order, in ``npartitions`` partitions.

    With known partition lengths the new partitions have near-equal numbers of rows.
    Otherwise, to avoid a pass over the data, neighbouring partitions are joined (fewer
    partitions) or each partition is cut into near-equal pieces (more partitions).
    """
    n = check_npartitions(npartitions)
    old = frame.npartitions
    if n == old:
        return frame
    name = new_name("repartition")
    graph = dict(frame._graph)
    src = frame._name
    lengths = frame._lengths
    if lengths is not None:
        starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        bounds = _bounds(starts[-1], n)
        for j in range(n):
            lo, hi = bounds[j], bounds[j + 1]
            pieces = [(methods.iloc_slice, (src, i), max(lo, starts[i]) - starts[i],
                       min(hi, starts[i + 1]) - starts[i])
                      for i in range(old) if starts[i] < hi and starts[i + 1] > lo]
            graph[(name, j)] = (methods.concat, pieces or [(methods.iloc_slice, (src, 0), 0, 0)])
        new_lengths: tuple[int, ...] | None = tuple(np.diff(bounds).tolist())
    elif n < old:
        groups = _bounds(old, n)
        for j in range(n):
            graph[(name, j)] = (methods.concat,
                                [(src, i) for i in range(groups[j], groups[j + 1])])
        new_lengths = None
    else:
        j = 0
        for i in range(old):
            pieces = n // old + (i < n % old)
            for p in range(pieces):
                graph[(name, j)] = (methods.split_piece, (src, i), p, pieces)
                j += 1
        new_lengths = None
    # rows keep their order, so an index of global row positions stays one
    return type(frame)(graph, name, frame._meta, n, new_lengths, None, frame._positional)
