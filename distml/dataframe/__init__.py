"""Partitioned pandas DataFrames computed lazily on a distml cluster (or in this process).

``read_csv`` and ``from_pandas`` make a :class:`DataFrame`; operations build a task graph;
``.compute()`` runs it on the default client if one is open, else in this process, and
returns pandas objects; ``.to_array()`` hands the values to ``distml.array`` for estimators.
"""

from distml.dataframe.core import DataFrame, Scalar, Series
from distml.dataframe.io import read_csv
from distml.dataframe.partition import from_pandas

__all__ = ["DataFrame", "Scalar", "Series", "from_pandas", "read_csv"]
