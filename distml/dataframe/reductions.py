"""Reductions by per-partition summaries combined in one final task.

``sum``, ``min``, ``max`` and ``count`` combine partial results exactly; ``mean`` combines
partial sums and counts; ``describe`` combines counts, means and sums of squared deviations
(Chan et al.'s parallel formula, so ``std`` matches pandas to rounding).  Its quartiles are
exact when every partition has at most :data:`EXACT_LIMIT` values of a column (they are sent
whole); otherwise they are approximated by merging per-partition quantile sketches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

REDUCTIONS = ("sum", "mean", "min", "max", "count")

#: The quantiles each partition reports for ``describe``; 0.25, 0.5 and 0.75 are exact members.
SKETCH = np.arange(101) / 100
QUARTILES = (0.25, 0.5, 0.75)
#: Partitions with at most this many values of a column send them all for the quartiles.
EXACT_LIMIT = 1000


def reduce_chunk(part: Any, op: str, numeric_only: bool) -> tuple:
    """One partition's partial result for ``op``: ``(rows, value)``, or ``(rows, sum, count)``."""
    kwargs = {"numeric_only": numeric_only} if isinstance(part, pd.DataFrame) else {}
    if op == "mean":
        sums = part.sum(**kwargs)
        counts = part[sums.index].count() if isinstance(part, pd.DataFrame) else part.count()
        return len(part), sums, counts
    return len(part), getattr(part, op)(**kwargs)


def _combine(values: list, how: str) -> Any:
    """Reduce partial values (scalars, or Series indexed by column) with pandas' ``how``."""
    if isinstance(values[0], pd.Series):
        return getattr(pd.DataFrame(values), how)()
    return getattr(pd.Series(values), how)()


def reduce_combine(chunks: Sequence[tuple], op: str) -> Any:
    """The final result of ``op`` from the partitions' partial results."""
    used = [c for c in chunks if c[0] > 0] or list(chunks[:1])
    if op == "mean":
        sums = _combine([c[1] for c in used], "sum")
        counts = _combine([c[2] for c in used], "sum")
        return sums / counts
    return _combine([c[1] for c in used], "sum" if op == "count" else op)


def numeric_columns(meta: pd.DataFrame) -> list:
    """Columns that ``describe`` summarizes: numbers, not booleans."""
    return list(meta.select_dtypes(include="number").columns)


def describe_chunk(part: Any, columns: list | None) -> dict:
    """Per column: non-null count, mean, sum of squared deviations, min, max, quantile sketch."""
    frame = part.to_frame() if isinstance(part, pd.Series) else part[columns]
    out = {}
    for col in frame.columns:
        x = frame[col].dropna().to_numpy(dtype="float64")
        if len(x):
            mean = x.mean()
            exact = len(x) <= EXACT_LIMIT
            out[col] = (len(x), mean, float(((x - mean) ** 2).sum()), x.min(), x.max(),
                        exact, x if exact else np.quantile(x, SKETCH))
        else:
            out[col] = (0, np.nan, 0.0, np.nan, np.nan, True, x)
    return out


def _merged_quantiles(parts: list[tuple[int, bool, np.ndarray]]) -> list[float]:
    """Quartiles of the union of partitions given as ``(count, exact, values or sketch)``.

    Exact when all partitions sent their values, or when only one partition has values.
    Otherwise each sketch point stands for the rows between its neighbouring grid quantiles
    (half that at the ends), each sent value for one row, and the weighted empirical
    distribution of the union is interpolated at the quartiles.
    """
    if all(exact for _, exact, _ in parts):
        return [float(v) for v in np.quantile(np.concatenate([x for _, _, x in parts]),
                                              QUARTILES)]
    if len(parts) == 1:
        grid = parts[0][2]
        return [float(grid[int(round(q * 100))]) for q in QUARTILES]
    step = np.full(len(SKETCH), SKETCH[1] - SKETCH[0])
    step[0] = step[-1] = step[0] / 2
    values = np.concatenate([x for _, _, x in parts])
    weights = np.concatenate([np.ones(n) if exact else n * step for n, exact, _ in parts])
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    centres = (np.cumsum(weights) - weights / 2) / weights.sum()
    return [float(np.interp(q, centres, values)) for q in QUARTILES]


def describe_combine(chunks: Sequence[dict], series: bool = False, name: Any = None) -> Any:
    """The ``describe()`` table (a Series for a series) from the partitions' summaries."""
    index = ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    table = {}
    for col in chunks[0]:
        stats = [c[col] for c in chunks if c[col][0] > 0]
        n = sum(s[0] for s in stats)
        if n == 0:
            table[col] = [0.0] + [np.nan] * 7
            continue
        mean = sum(s[0] * s[1] for s in stats) / n
        m2 = sum(s[2] + s[0] * (s[1] - mean) ** 2 for s in stats)
        std = float(np.sqrt(m2 / (n - 1))) if n > 1 else np.nan
        quartiles = _merged_quantiles([(s[0], s[5], s[6]) for s in stats])
        table[col] = [float(n), mean, std, min(s[3] for s in stats), *quartiles,
                      max(s[4] for s in stats)]
    frame = pd.DataFrame(table, index=index, dtype="float64")
    if series:
        return frame.iloc[:, 0].rename(name)
    return frame
