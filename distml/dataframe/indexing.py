"""The global index of a partitioned collection: divisions, ``.loc``, ``reset_index`` and
``set_index``.

``divisions`` are known when the index is sorted across partitions: partition ``i`` holds
labels from ``divisions[i]`` up to ``divisions[i + 1]`` (the last one included).  ``.loc``
then reads only the partitions that can hold the labels asked for and reports labels outside
every partition as a KeyError before anything runs; without divisions it looks in every
partition.  ``reset_index`` numbers the rows 0, 1, ... across partitions: from the partition
lengths when they are known, else through small tasks adding up the lengths.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from distml.dataframe import methods
from distml.dataframe.core import DataFrame, Series, _Frame, _new
from distml.dataframe.scheduling import get, new_name

__all__ = ["LocIndexer", "reset_index", "set_index", "positional_divisions"]


def positional_divisions(lengths: Sequence[int]) -> tuple | None:
    """Divisions of partitions indexed by global row position, or None if one is empty."""
    if not lengths or min(lengths) == 0:
        return None
    starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return tuple(starts[:-1]) + (starts[-1] - 1,)


def _subset(frame: _Frame, parts: list[int], func: Any, args: tuple,
            divisions: tuple | None, prefix: str) -> _Frame:
    """A collection of ``func(partition, *args)`` for the partitions ``parts`` only."""
    name = new_name(prefix)
    graph = dict(frame._graph)
    if not parts:  # nothing can match: one empty partition
        graph[(name, 0)] = frame._meta.copy()
        return _new(graph, name, frame._meta, 1, (0,))
    for j, i in enumerate(parts):
        graph[(name, j)] = (func, (frame._name, i), *args)
    return _new(graph, name, frame._meta, len(parts), None, divisions)


def _as_label(frame: _Frame, label: Any) -> Any:
    """``label`` in the index's own type where pandas would convert it (date strings)."""
    index = frame._meta.index
    if isinstance(label, str) and isinstance(index, pd.DatetimeIndex):
        stamp = pd.Timestamp(label)
        if index.tz is not None and stamp.tz is None:
            stamp = stamp.tz_localize(index.tz)
        return stamp
    return label


def _compare(what: str, check: Any) -> Any:
    try:
        return check()
    except TypeError as exc:
        raise TypeError(f".loc: {what} cannot be compared with the index labels ({exc})") \
            from None


class LocIndexer:
    """``frame.loc[...]``: rows by index label, and for frames optionally columns.

    Rows: a label, a slice ``lo:hi`` of labels (both ends included), a list of labels
    (rows come in partition order) or a boolean Series.  A row that matches no label gives
    no row; with known divisions a label outside every partition is a KeyError at once.
    """

    def __init__(self, frame: _Frame) -> None:
        self._frame = frame

    def __getitem__(self, key: Any) -> _Frame:
        if isinstance(key, tuple):
            if isinstance(self._frame, Series):
                raise IndexError("too many indexers: a Series has only rows")
            if len(key) != 2:
                raise IndexError(f".loc takes rows or (rows, columns), got {len(key)} "
                                 "indexers")
            rows, columns = key
            out = self._rows(rows)
            if isinstance(columns, slice):
                if columns != slice(None):
                    raise TypeError(".loc: column slices other than ':' are not supported; "
                                    "list the columns")
                return out
            return out[columns]
        return self._rows(key)

    def _rows(self, key: Any) -> _Frame:
        frame = self._frame
        if isinstance(key, Series):
            return frame[key]
        if isinstance(key, slice):
            return self._slice(key)
        if isinstance(key, (list, np.ndarray, pd.Index)):
            return self._labels(list(key))
        if isinstance(key, (_Frame, pd.Series, pd.DataFrame)) or not isinstance(key, Hashable):
            raise TypeError(f".loc: cannot select rows with a {type(key).__name__}; use a "
                            "label, a slice of labels, a list of labels or a boolean Series")
        return self._label(key)

    def _label(self, label: Any) -> _Frame:
        frame, n = self._frame, self._frame.npartitions
        label = _as_label(frame, label)
        if not frame.known_divisions:
            return _subset(frame, list(range(n)), methods.loc_label, (label,), None, "loc")
        d = frame.divisions
        parts = _compare(f"label {label!r}",
                         lambda: [i for i in range(n) if d[i] <= label <= d[i + 1]])
        if not parts:
            raise KeyError(f"{label!r} is not in the index: it lies outside the divisions "
                           f"{d[0]!r} .. {d[-1]!r}")
        return _subset(frame, parts, methods.loc_label, (label,), (label,) * (len(parts) + 1),
                       "loc")

    def _slice(self, key: slice) -> _Frame:
        frame, n = self._frame, self._frame.npartitions
        if key.step is not None:
            raise ValueError(f".loc: slices with a step are not supported, got {key!r}")
        lo, hi = _as_label(frame, key.start), _as_label(frame, key.stop)
        if not frame.known_divisions:
            return _subset(frame, list(range(n)), methods.loc_slice, (lo, hi), None, "loc")
        d = frame.divisions
        parts = _compare(f"slice {key!r}", lambda: [
            i for i in range(n)
            if (lo is None or d[i + 1] >= lo) and (hi is None or d[i] <= hi)])
        divisions = None
        if parts:
            first = d[parts[0]] if lo is None else max(lo, d[parts[0]])
            last = d[parts[-1] + 1] if hi is None else min(hi, d[parts[-1] + 1])
            divisions = (first, *[d[i] for i in parts[1:]], last)
        return _subset(frame, parts, methods.loc_slice, (lo, hi), divisions, "loc")

    def _labels(self, labels: list) -> _Frame:
        frame, n = self._frame, self._frame.npartitions
        labels = [_as_label(frame, label) for label in labels]
        if not frame.known_divisions:
            return _subset(frame, list(range(n)), methods.loc_labels, (labels,), None, "loc")
        d = frame.divisions
        parts: set[int] = set()
        missing = []
        for label in labels:
            found = _compare(f"label {label!r}",
                             lambda: [i for i in range(n) if d[i] <= label <= d[i + 1]])
            parts.update(found)
            if not found:
                missing.append(label)
        if missing:
            raise KeyError(f"labels {missing[:5]} are not in the index: they lie outside the "
                           f"divisions {d[0]!r} .. {d[-1]!r}")
        chosen = sorted(parts)
        divisions = (*[d[i] for i in chosen], d[chosen[-1] + 1]) if chosen else None
        return _subset(frame, chosen, methods.loc_labels, (labels,), divisions, "loc")


def reset_index(frame: _Frame, drop: bool = False, prefix: str = "reset-index") -> _Frame:
    """``frame`` with rows numbered 0, 1, ... across partitions (a unique RangeIndex).

    With known partition lengths the offsets are constants and the divisions follow; without
    them small tasks add up the lengths (within groups of about ``sqrt(n)`` partitions, then
    along the groups; a partition waits only for the partitions before it), and the divisions
    become known once the lengths are (``persist`` or ``len``).  The old index becomes a
    column unless ``drop``.
    """
    meta = frame._meta.reset_index(drop=drop)
    name = new_name(prefix)
    graph = dict(frame._graph)
    src, n = frame._name, frame.npartitions
    if frame._lengths is not None:
        starts = np.concatenate([[0], np.cumsum(frame._lengths)]).astype(int).tolist()
        for i in range(n):
            graph[(name, i)] = (methods.range_indexed, (src, i), starts[i], drop)
    else:  # two-level prefix sums: a short chain over groups of about sqrt(n) partitions
        lengths, starts, totals, offsets = (f"{name}-{part}" for part in
                                            ("len", "start", "total", "offset"))
        size = max(1, math.isqrt(n - 1) + 1)
        for i in range(n):
            graph[(lengths, i)] = (len, (src, i))
        for g, first in enumerate(range(0, n, size)):
            members = list(range(first, min(first + size, n)))
            if first + size < n:  # a later group starts after this one
                graph[(totals, g)] = (sum, [(lengths, i) for i in members])
            if g:
                graph[(offsets, g)] = (operator.add, (offsets, g - 1), (totals, g - 1)) \
                    if g > 1 else (operator.add, 0, (totals, 0))
            for k, i in enumerate(members):
                # a partition waits only for the lengths of the partitions before it
                if k:
                    graph[(starts, i)] = (sum, [(lengths, j) for j in members[:k]])
                offset: Any = (starts, i) if k else 0
                if g:
                    offset = (operator.add, (offsets, g), offset) if k else (offsets, g)
                graph[(name, i)] = (methods.range_indexed, (src, i), offset, drop)
    return _new(graph, name, meta, n, frame._lengths, None, positional=True)


def _check_column(frame: _Frame, column: Hashable) -> None:
    if not isinstance(frame, DataFrame):
        raise TypeError("set_index needs a DataFrame")
    if not isinstance(column, Hashable):
        raise TypeError(f"set_index takes one column name, not {column!r}")
    frame._check_columns([column])


def _missing_error(column: Hashable, partition: int) -> ValueError:
    return ValueError(f"set_index: column {column!r} has missing values (partition "
                      f"{partition}); drop them first with dropna(subset=[{column!r}])")


def set_index(frame: DataFrame, column: Hashable, sorted: bool = False, drop: bool = True,
              npartitions: int | None = None) -> DataFrame:
    """``frame`` indexed by ``column``, with known divisions.

    ``sorted=True`` promises that the column already increases across partitions: one pass
    checks it (a ValueError names the first partition out of order) and finds the divisions;
    empty partitions are dropped.  Otherwise the rows are sorted by ``column`` across
    ``npartitions`` partitions (default: as many as now) by :mod:`distml.dataframe.shuffle`.
    The column must have no missing values.
    """
    _check_column(frame, column)
    meta = frame._meta.set_index(column, drop=drop)
    if not sorted:
        from distml.dataframe.shuffle import sort_by_column

        return sort_by_column(frame, column, drop, npartitions or frame.npartitions, meta)
    if npartitions is not None:
        raise ValueError("set_index(sorted=True) keeps the partitions; repartition first")
    name = new_name("set-index")
    graph = dict(frame._graph)
    for i in range(frame.npartitions):
        graph[(name + "-stats", i)] = (methods.index_stats, (frame._name, i), column)
    stats = get(graph, [(name + "-stats", i) for i in range(frame.npartitions)])
    kept: list[int] = []
    for i, (rows, low, high, ordered, missing) in enumerate(stats):
        if missing:
            raise _missing_error(column, i)
        if not rows:
            continue
        if not ordered:
            raise ValueError(f"set_index(sorted=True): column {column!r} is not sorted "
                             f"within partition {i}; use sorted=False to sort it")
        if kept and stats[kept[-1]][2] > low:
            raise ValueError(f"set_index(sorted=True): partition {i} starts at {low!r}, "
                             f"before partition {kept[-1]} ends ({stats[kept[-1]][2]!r}); "
                             "use sorted=False to sort it")
        kept.append(i)
    graph = dict(frame._graph)
    if not kept:
        graph[(name, 0)] = meta.copy()
        return DataFrame(graph, name, meta, 1, (0,))
    for j, i in enumerate(kept):
        graph[(name, j)] = (methods.set_index, (frame._name, i), column, drop)
    divisions = (*[stats[i][1] for i in kept], stats[kept[-1]][2])
    return DataFrame(graph, name, meta, len(kept), tuple(stats[i][0] for i in kept),
                     divisions)
