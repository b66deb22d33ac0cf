"""Functions that tasks run on partitions (pandas objects); importable by the workers."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd


def concat(parts: Sequence[Any]) -> Any:
    """Concatenate partitions in order; empty ones are left out unless all are empty."""
    parts = list(parts)
    nonempty = [p for p in parts if len(p)]
    if len(nonempty) == 1:
        return nonempty[0]
    return pd.concat(nonempty or parts[:1])


def iloc_slice(part: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a partition, by position."""
    return part.iloc[start:stop]


def split_piece(part: Any, index: int, pieces: int) -> Any:
    """Piece ``index`` of ``pieces`` near-equal consecutive row ranges of a partition."""
    n = len(part)
    return part.iloc[index * n // pieces:(index + 1) * n // pieces]


def head_of(n: int, parts: Sequence[Any]) -> Any:
    """The first ``n`` rows of the concatenation of ``parts``."""
    return concat([p.iloc[:n] for p in parts]).iloc[:n]


def filter_rows(part: Any, mask: pd.Series) -> Any:
    """The rows of ``part`` where ``mask`` is true."""
    return part[mask]


def assign(part: pd.DataFrame, names: list[Hashable], *values: Any) -> pd.DataFrame:
    """``part`` with columns ``names`` set to ``values`` (added or replaced)."""
    out = part.copy(deep=False)
    for name, value in zip(names, values):
        out[name] = value
    return out


def dropna(part: Any, how: str, subset: list | None, thresh: int | None) -> Any:
    """Rows of a partition without missing values, as ``pandas.DataFrame.dropna``."""
    if isinstance(part, pd.Series):
        return part.dropna()
    if thresh is not None:
        return part.dropna(thresh=thresh, subset=subset)
    return part.dropna(how=how, subset=subset)


def astype(part: Any, dtype: Any) -> Any:
    """A partition converted to ``dtype``."""
    return part.astype(dtype)


def to_numpy(part: Any, dtype: np.dtype) -> np.ndarray:
    """A partition's values as a NumPy array of ``dtype`` (2-D for frames, 1-D for series)."""
    return np.asarray(part.to_numpy(), dtype=dtype)


def call_with_kwargs(func: Any, kwargs: dict, *args: Any) -> Any:
    """``func(*args, **kwargs)``: lets tasks pass keyword arguments."""
    return func(*args, **kwargs)


def loc_label(part: Any, label: Any) -> Any:
    """The rows of a partition whose index label is ``label`` (none if it is absent)."""
    return part[part.index == label]


def loc_slice(part: Any, lo: Any, hi: Any) -> Any:
    """The rows with ``lo <= label <= hi`` (either bound may be None), in partition order."""
    if part.index.is_monotonic_increasing:
        return part.loc[lo:hi]
    keep = np.ones(len(part), dtype=bool)
    if lo is not None:
        keep &= np.asarray(part.index >= lo)
    if hi is not None:
        keep &= np.asarray(part.index <= hi)
    return part[keep]


def loc_labels(part: Any, labels: list) -> Any:
    """The rows whose index label is one of ``labels``, in partition order."""
    return part[part.index.isin(labels)]


def range_indexed(part: Any, offset: int, drop: bool) -> Any:
    """A partition renumbered ``offset, offset + 1, ...``; the old index becomes a column
    unless ``drop``."""
    out = part.reset_index(drop=drop)
    out.index = pd.RangeIndex(offset, offset + len(out))
    return out


def index_stats(part: pd.DataFrame, column: Hashable) -> tuple:
    """``(rows, min, max, sorted, has missing)`` of a column of one partition."""
    col = part[column]
    if not len(col):
        return 0, None, None, True, False
    low, high = (v.item() if isinstance(v, (np.integer, np.floating)) else v
                 for v in (col.min(), col.max()))
    return len(col), low, high, col.is_monotonic_increasing, bool(col.isna().any())


def set_index(part: pd.DataFrame, column: Hashable, drop: bool) -> pd.DataFrame:
    """A partition indexed by ``column``."""
    return part.set_index(column, drop=drop)


def column_sample(part: pd.DataFrame, column: Hashable, size: int) -> tuple:
    """``(rows, missing, sorted sample)``: ``size`` evenly spaced order statistics of a
    column, its minimum and maximum included."""
    values = part[column]
    missing = int(values.isna().sum())
    ordered = np.sort(values.dropna().to_numpy())
    if len(ordered) > size:
        ordered = ordered[np.linspace(0, len(ordered) - 1, size).round().astype(int)]
    return len(values), missing, ordered


def split_by_boundaries(part: pd.DataFrame, column: Hashable, boundaries: np.ndarray) -> list:
    """The rows of a partition split by ``column`` into ``len(boundaries) + 1`` ranges:
    piece ``j`` holds ``boundaries[j-1] <= value < boundaries[j]``."""
    target = np.searchsorted(boundaries, part[column].to_numpy(), side="right")
    return [part[target == j] for j in range(len(boundaries) + 1)]


def sorted_by(pieces: Sequence[pd.DataFrame], column: Hashable, drop: bool) -> pd.DataFrame:
    """The pieces joined, indexed by ``column`` and sorted by it (ties keep their order)."""
    return pd.concat(list(pieces)).set_index(column, drop=drop).sort_index(kind="stable")
