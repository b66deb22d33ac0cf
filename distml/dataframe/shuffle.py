"""Sorting rows across partitions by a column (``set_index`` without ``sorted=True``).

One pass samples each partition's column (evenly spaced order statistics); the merged
samples give boundary values that cut the rows into ranges of similar size.  Each partition
is split by the boundaries, piece ``j`` of every partition is joined into new partition
``j``, which is then sorted.  Every boundary is a value of the column, so each new
partition starts exactly at its division.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable

import numpy as np
import pandas as pd

from distml.dataframe import methods
from distml.dataframe.core import DataFrame
from distml.dataframe.scheduling import get, new_name

__all__ = ["sort_by_column", "boundaries"]

#: Order statistics each partition reports for choosing the boundaries.
SAMPLE_SIZE = 256


def boundaries(samples: list[tuple[int, int, np.ndarray]], npartitions: int) -> np.ndarray:
    """Up to ``npartitions - 1`` increasing column values splitting the rows evenly.

    Each sample value stands for ``rows / len(sample)`` rows of its partition.  Values
    equal to the overall minimum are left out, so that no range is empty.
    """
    values = [s for _, _, s in samples if len(s)]
    weights = [np.full(len(s), n / len(s)) for n, _, s in samples if len(s)]
    if not values:
        return np.array([])
    values_all = np.concatenate(values)
    order = np.argsort(values_all, kind="stable")
    ordered, cumulative = values_all[order], np.cumsum(np.concatenate(weights)[order])
    total = cumulative[-1]
    picks = np.searchsorted(cumulative, total * np.arange(1, npartitions) / npartitions)
    cuts = ordered[np.minimum(picks, len(ordered) - 1)]
    cuts = pd.unique(cuts)
    return np.sort(cuts[cuts > ordered[0]])


def sort_by_column(frame: DataFrame, column: Hashable, drop: bool, npartitions: int,
                   meta: pd.DataFrame) -> DataFrame:
    """``frame`` indexed by ``column`` and sorted by it into about ``npartitions`` parts."""
    from distml.dataframe.indexing import _missing_error
    from distml.dataframe.partition import check_npartitions

    npartitions = check_npartitions(npartitions)
    name = new_name("sort")
    graph = dict(frame._graph)
    src, n = frame._name, frame.npartitions
    for i in range(n):
        graph[(name + "-sample", i)] = (methods.column_sample, (src, i), column, SAMPLE_SIZE)
    samples = get(graph, [(name + "-sample", i) for i in range(n)])
    for i, (_, missing, _) in enumerate(samples):
        if missing:
            raise _missing_error(column, i)
    cuts = boundaries(samples, npartitions)
    graph = dict(frame._graph)
    nonempty = [s for _, _, s in samples if len(s)]
    if not nonempty:
        graph[(name, 0)] = meta.copy()
        return DataFrame(graph, name, meta, 1, (0,))
    for i in range(n):
        graph[(name + "-split", i)] = (methods.split_by_boundaries, (src, i), column, cuts)
        for j in range(len(cuts) + 1):
            graph[(name + "-piece", i, j)] = (operator.getitem, (name + "-split", i), j)
    for j in range(len(cuts) + 1):
        graph[(name, j)] = (methods.sorted_by, [(name + "-piece", i, j) for i in range(n)],
                            column, drop)
    low = min(s[0] for s in nonempty)
    high = max(s[-1] for s in nonempty)
    divisions = tuple(pd.Index([low, *cuts, high]))  # pandas scalars (e.g. Timestamps)
    return DataFrame(graph, name, meta, len(cuts) + 1, None, divisions)
