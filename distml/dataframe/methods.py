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
