"""Lazy, partitioned DataFrame and Series, and Scalar results of reductions.

A collection is a task graph whose keys ``(name, i)`` are its partitions (pandas objects, in
row order), plus ``meta``: an empty pandas object with the columns and dtypes of a partition.
Operations add tasks and compute the new ``meta`` by applying the same pandas operation to the
old ``meta``, so mistakes (unknown columns, bad arguments) surface before anything runs.

Each partition keeps its pandas index.  When the index is sorted across partitions the
collection knows its ``divisions``: the first index value of every partition and the last
value of the last one, which lets ``.loc`` read only the partitions that can hold a label
(see :mod:`distml.dataframe.indexing`).  Operations between two collections pair partition
``i`` with partition ``i``, so their operands must be partitioned alike (derived from the
same collection without filtering one of them).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from distml.client.client import default_client
from distml.dataframe import methods, reductions
from distml.dataframe.scheduling import get, new_name

__all__ = ["DataFrame", "Series", "Scalar", "partitionwise"]


class Scalar:
    """A single lazy value, such as ``df["a"].sum()``; usable as an operand of column math."""

    def __init__(self, graph: Mapping, name: str, meta: Any) -> None:
        self._graph = dict(graph)
        self._name = name
        self._meta = meta

    def __distml_graph__(self) -> Mapping:
        return self._graph

    def __distml_keys__(self) -> list[tuple]:
        return [(self._name, 0)]

    @staticmethod
    def __distml_finalize__(values: list) -> Any:
        return values[0]

    def __distml_persist__(self, futures: list) -> "Scalar":
        return Scalar({(self._name, 0): futures[0]}, self._name, self._meta)

    def compute(self) -> Any:
        """The value, computed on the default client if there is one, else in this process."""
        return _compute(self)

    def __repr__(self) -> str:
        return f"Scalar<{self._name}, type={type(self._meta).__name__}>"


def _compute(coll: Any) -> Any:
    client = default_client()
    if client is not None:
        return client.compute(coll, sync=True)
    return coll.__distml_finalize__(get(coll.__distml_graph__(), coll.__distml_keys__()))


def _meta_of(obj: Any) -> Any:
    return obj._meta if isinstance(obj, (_Frame, Scalar)) else obj


def partitionwise(func: Callable, *args: Any, meta: Any = None, prefix: str | None = None,
                  keeps_rows: bool = True, keeps_index: bool = True) -> "DataFrame | Series":
    """Apply ``func`` to matching partitions of the collections among ``args``.

    Partition ``i`` of the result is ``func(*args_i)`` where frames give their partition
    ``i``, a :class:`Scalar` gives its value and other arguments are passed as they are.
    ``meta`` defaults to ``func`` applied to the arguments' ``meta``.  ``keeps_rows`` says
    that partitions keep their lengths, so known lengths carry over; ``keeps_index`` that
    each output row keeps an index label of its partition, so known divisions carry over.
    """
    frames = [a for a in args if isinstance(a, _Frame)]
    if not frames:
        raise TypeError("partitionwise needs at least one DataFrame or Series argument")
    n = frames[0].npartitions
    for f in frames[1:]:
        if f.npartitions != n:
            raise ValueError(f"operands have different numbers of partitions ({n} and "
                             f"{f.npartitions}); repartition them alike first")
    known = [f._lengths for f in frames if f._lengths is not None]
    if len(set(known)) > 1:
        raise ValueError(f"operands have partitions of different lengths {known[0]} and "
                         f"{[k for k in known if k != known[0]][0]}; they are not aligned")
    divisions = [f._divisions for f in frames]
    if len({d for d in divisions if d is not None}) > 1:
        raise ValueError("operands have different divisions (their indexes are split at "
                         "different labels); they are not aligned")
    if meta is None:
        meta = func(*[_meta_of(a) for a in args])
    graph: dict = {}
    for a in args:
        if isinstance(a, (_Frame, Scalar)):
            graph.update(a._graph)
    name = new_name(prefix or getattr(func, "__name__", "map-partitions"))
    for i in range(n):
        task = [func]
        for a in args:
            if isinstance(a, _Frame):
                task.append((a._name, i))
            elif isinstance(a, Scalar):
                task.append((a._name, 0))
            else:
                task.append(a)
        graph[(name, i)] = tuple(task)
    kept = divisions[0] if keeps_index and all(d == divisions[0] for d in divisions) else None
    positional = keeps_rows and keeps_index and all(f._positional for f in frames)
    return _new(graph, name, meta, n, known[0] if known and keeps_rows else None, kept,
                positional)


def _new(graph: Mapping, name: str, meta: Any, npartitions: int,
         lengths: tuple[int, ...] | None, divisions: tuple | None = None,
         positional: bool = False) -> "DataFrame | Series":
    if isinstance(meta, pd.DataFrame):
        return DataFrame(graph, name, meta.iloc[:0], npartitions, lengths, divisions,
                         positional)
    if isinstance(meta, pd.Series):
        return Series(graph, name, meta.iloc[:0], npartitions, lengths, divisions,
                      positional)
    raise TypeError(f"partitions must be pandas DataFrames or Series, but meta is a "
                    f"{type(meta).__name__}; pass meta= as an empty DataFrame or Series")


def _make_meta(meta: Any) -> Any:
    """``meta`` given by a user: a pandas object, ``{column: dtype}`` or ``(name, dtype)``."""
    if isinstance(meta, (pd.DataFrame, pd.Series)):
        return meta.iloc[:0]
    if isinstance(meta, dict):
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in meta.items()})
    if isinstance(meta, tuple) and len(meta) == 2:
        return pd.Series(dtype=meta[1], name=meta[0])
    raise TypeError(f"meta must be an empty DataFrame/Series, a dict of column dtypes or a "
                    f"(name, dtype) tuple, not {type(meta).__name__}")


def _binary(op: Callable, reflected: bool = False) -> Callable:
    def method(self: "_Frame", other: Any) -> "_Frame":
        if isinstance(other, (pd.DataFrame, pd.Series, pd.Index, np.ndarray)):
            raise TypeError(f"cannot combine a distml {type(self).__name__} with a "
                            f"{type(other).__name__}: its rows do not follow the partitions")
        return partitionwise(op, other, self) if reflected else partitionwise(op, self, other)
    method.__name__ = op.__name__
    return method


def _unary(op: Callable) -> Callable:
    def method(self: "_Frame") -> "_Frame":
        return partitionwise(op, self)
    method.__name__ = op.__name__
    return method


class _Frame:
    """What DataFrame and Series share: the graph, partitions, computing and element math."""

    def __init__(self, graph: Mapping, name: str, meta: Any, npartitions: int,
                 lengths: tuple[int, ...] | None = None, divisions: tuple | None = None,
                 positional: bool = False) -> None:
        self._graph = dict(graph)
        self._name = name
        self._meta = meta
        self._npartitions = npartitions
        self._lengths = tuple(lengths) if lengths is not None else None
        if divisions is not None and len(divisions) != npartitions + 1:
            raise ValueError(f"{npartitions} partitions need {npartitions + 1} divisions, "
                             f"got {len(divisions)}")
        self._divisions = tuple(
            d.item() if isinstance(d, (np.integer, np.floating, np.bool_)) else d
            for d in divisions) if divisions is not None else None
        #: the index is the global row position (0, 1, ...): lengths tell the divisions
        self._positional = positional

    def _like(self, graph: Mapping, lengths: tuple[int, ...] | None) -> "_Frame":
        """The same collection (name, meta, divisions) with another graph and lengths."""
        return type(self)(graph, self._name, self._meta, self._npartitions, lengths,
                          self._divisions, self._positional)

    # ------------------------------------------------------------------ collection protocol
    def __distml_graph__(self) -> Mapping:
        return self._graph

    def __distml_keys__(self) -> list[tuple]:
        return [(self._name, i) for i in range(self._npartitions)]

    @staticmethod
    def __distml_finalize__(values: list) -> Any:
        return methods.concat(values)

    def __distml_persist__(self, futures: list) -> "_Frame":
        return self._like(dict(zip(self.__distml_keys__(), futures)), self._lengths)

    # ------------------------------------------------------------------ basics
    @property
    def npartitions(self) -> int:
        """The number of partitions."""
        return self._npartitions

    @property
    def divisions(self) -> tuple:
        """The first index label of each partition and the last label of the last one, or
        ``(None,) * (npartitions + 1)`` when unknown (index not known to be sorted)."""
        if self._divisions is None and self._positional and self._lengths is not None:
            from distml.dataframe.indexing import positional_divisions

            self._divisions = positional_divisions(self._lengths)
        return self._divisions or (None,) * (self._npartitions + 1)

    @property
    def known_divisions(self) -> bool:
        """Whether :attr:`divisions` are known."""
        return self.divisions[0] is not None

    @property
    def index(self) -> pd.Index:
        """An empty index of the partitions' index type and name (the labels are lazy)."""
        return self._meta.index

    @property
    def loc(self) -> Any:
        """Rows by index label: ``df.loc[label]``, ``df.loc[lo:hi]``, ``df.loc[[labels]]``,
        ``df.loc[rows, columns]`` (see :mod:`distml.dataframe.indexing`)."""
        from distml.dataframe.indexing import LocIndexer

        return LocIndexer(self)

    def reset_index(self, drop: bool = False) -> "_Frame":
        """The rows numbered 0, 1, ... across partitions (the old index becomes a column
        unless ``drop``); see :func:`distml.dataframe.indexing.reset_index`."""
        from distml.dataframe.indexing import reset_index

        return reset_index(self, drop)

    @property
    def meta(self) -> Any:
        """An empty pandas object with the columns and dtypes of the partitions."""
        return self._meta

    def compute(self) -> Any:
        """The whole collection as one pandas object (default client, else this process)."""
        return _compute(self)

    def persist(self) -> "_Frame":
        """The same collection with its partitions computed and held (on the cluster if a
        client is open, else in this process)."""
        client = default_client()
        if client is not None:
            return client.persist(self)
        keys = self.__distml_keys__()
        parts = get(self._graph, keys)
        return self._like(dict(zip(keys, parts)), tuple(len(p) for p in parts))

    def partition_lengths(self) -> tuple[int, ...]:
        """The number of rows of each partition; computed once (one small pass) if unknown."""
        if self._lengths is None:
            name = new_name("len")
            graph = dict(self._graph)
            for i in range(self._npartitions):
                graph[(name, i)] = (len, (self._name, i))
            keys = [(name, i) for i in range(self._npartitions)]
            self._lengths = tuple(int(n) for n in get(graph, keys))
        return self._lengths

    def __len__(self) -> int:
        return sum(self.partition_lengths())

    def __bool__(self) -> bool:
        raise TypeError(f"the truth value of a distml {type(self).__name__} is ambiguous; "
                        f"compute it first")

    def head(self, n: int = 5) -> Any:
        """The first ``n`` rows as a pandas object, computing as few partitions as needed."""
        if self._lengths is not None:
            cumulative = np.cumsum(self._lengths)
            k = int(min(np.searchsorted(cumulative, n) + 1, self._npartitions))
        else:
            k = 1
        while True:
            name = new_name("head")
            graph = dict(self._graph)
            graph[(name, 0)] = (methods.head_of, n, [(self._name, i) for i in range(k)])
            out = get(graph, [(name, 0)])[0]
            if len(out) >= n or k >= self._npartitions:
                return out
            k = min(2 * k, self._npartitions)

    def map_partitions(self, func: Callable, *args: Any, meta: Any = None,
                       **kwargs: Any) -> "DataFrame | Series":
        """Apply ``func(partition, *args, **kwargs)`` to each partition.

        Arguments that are distml collections give their matching partition (Scalars their
        value).  Without ``meta`` (an empty pandas object, ``{column: dtype}`` or ``(name,
        dtype)``) the output's columns are found by calling ``func`` on empty partitions.
        """
        if kwargs:
            args = (func, kwargs, self, *args)
            func = methods.call_with_kwargs
        else:
            args = (self, *args)
        if meta is None:
            try:
                meta = func(*[_meta_of(a) for a in args])
            except Exception as exc:
                raise ValueError(f"could not infer the output of {func!r} by running it on an "
                                 f"empty partition ({type(exc).__name__}: {exc}); pass meta=")
        else:
            meta = _make_meta(meta)
        return partitionwise(func, *args, meta=meta, prefix="map-partitions",
                             keeps_rows=False, keeps_index=False)

    def dropna(self, how: str = "any", subset: list | None = None,
               thresh: int | None = None) -> "_Frame":
        """Rows without missing values (see ``pandas.DataFrame.dropna``)."""
        if isinstance(self, Series) and (subset is not None or thresh is not None):
            raise TypeError("Series.dropna() takes no subset or thresh")
        if subset is not None:
            subset = list(subset) if isinstance(subset, (list, tuple)) else [subset]
            self._check_columns(subset)
        meta = methods.dropna(self._meta, how, subset, thresh)
        return partitionwise(methods.dropna, self, how, subset, thresh, meta=meta,
                             keeps_rows=False)

    def repartition(self, npartitions: int) -> "_Frame":
        """The same rows in ``npartitions`` partitions (see :mod:`distml.dataframe.partition`)."""
        from distml.dataframe.partition import repartition

        return repartition(self, npartitions)

    def _check_columns(self, columns: list) -> None:
        known = list(self._meta.columns) if isinstance(self._meta, pd.DataFrame) else []
        missing = [c for c in columns if c not in known]
        if missing:
            raise KeyError(f"unknown column(s) {missing}; the columns are {known}")

    def abs(self) -> "_Frame":
        """Absolute values, element-wise."""
        return partitionwise(operator.abs, self)

    def astype(self, dtype: Any) -> "_Frame":
        """Values converted to ``dtype`` (one dtype, or ``{column: dtype}`` for a frame)."""
        return partitionwise(methods.astype, self, dtype)

    # ------------------------------------------------------------------ reductions
    def _reduce(self, op: str, numeric_only: bool = False) -> "Series | Scalar":
        if isinstance(self._meta, pd.DataFrame):
            if op == "mean" and not numeric_only:
                bad = [c for c, t in self._meta.dtypes.items()
                       if not (pd.api.types.is_numeric_dtype(t)
                               or pd.api.types.is_datetime64_any_dtype(t))]
                if bad:
                    raise TypeError(f"mean() of non-numeric column(s) {bad}; "
                                    f"pass numeric_only=True to skip them")
            meta = getattr(self._meta, op)(numeric_only=numeric_only)
        else:
            meta = getattr(self._meta, op)()
        name = new_name(op)
        graph = dict(self._graph)
        for i in range(self._npartitions):
            graph[(name + "-chunk", i)] = (reductions.reduce_chunk, (self._name, i), op,
                                           numeric_only)
        graph[(name, 0)] = (reductions.reduce_combine,
                            [(name + "-chunk", i) for i in range(self._npartitions)], op)
        if isinstance(meta, pd.Series):
            return Series(graph, name, meta.iloc[:0], 1, None)
        return Scalar(graph, name, meta)

    def sum(self, numeric_only: bool = False) -> "Series | Scalar":
        """Sum of each column (a lazy Series), or of a Series (a lazy Scalar)."""
        return self._reduce("sum", numeric_only)

    def mean(self, numeric_only: bool = False) -> "Series | Scalar":
        """Mean of each column, or of a Series; missing values are skipped."""
        return self._reduce("mean", numeric_only)

    def min(self, numeric_only: bool = False) -> "Series | Scalar":
        """Minimum of each column, or of a Series."""
        return self._reduce("min", numeric_only)

    def max(self, numeric_only: bool = False) -> "Series | Scalar":
        """Maximum of each column, or of a Series."""
        return self._reduce("max", numeric_only)

    def count(self, numeric_only: bool = False) -> "Series | Scalar":
        """Number of non-missing values of each column, or of a Series."""
        return self._reduce("count", numeric_only)

    def describe(self) -> "_Frame":
        """Summary statistics like ``pandas.DataFrame.describe`` for numeric columns.

        count, mean, std, min and max are exact (to floating-point rounding); the 25%, 50% and
        75% quartiles are approximated from per-partition quantile sketches when the data has
        more than one non-empty partition.  Returns a lazy one-partition collection.
        """
        series = isinstance(self._meta, pd.Series)
        columns = None if series else reductions.numeric_columns(self._meta)
        if series and not pd.api.types.is_numeric_dtype(self._meta.dtype):
            raise TypeError(f"describe() needs a numeric Series, not dtype {self._meta.dtype}")
        if not series and not columns:
            raise TypeError("describe() needs at least one numeric column")
        name = new_name("describe")
        graph = dict(self._graph)
        for i in range(self._npartitions):
            graph[(name + "-chunk", i)] = (reductions.describe_chunk, (self._name, i), columns)
        graph[(name, 0)] = (reductions.describe_combine,
                            [(name + "-chunk", i) for i in range(self._npartitions)],
                            series, self._meta.name if series else None)
        index = ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
        if series:
            meta = pd.Series(dtype="float64", name=self._meta.name)
        else:
            meta = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        return _new(graph, name, meta, 1, (len(index),))

    # ------------------------------------------------------------------ arrays
    def to_array(self) -> Any:
        """The values as a ``distml.array.Array``, one block of rows per partition.

        Block lengths are the partition lengths (computed in one small pass when unknown); a
        DataFrame gives a 2-D array of its columns' common dtype, a Series a 1-D array.
        """
        from distml.array import Array

        lengths = self.partition_lengths()
        dtype = self._meta.to_numpy().dtype
        name = new_name("values")
        graph = dict(self._graph)
        if isinstance(self._meta, pd.DataFrame):
            for i in range(self._npartitions):
                graph[(name, i, 0)] = (methods.to_numpy, (self._name, i), dtype)
            chunks = (tuple(lengths), (len(self._meta.columns),))
        else:
            for i in range(self._npartitions):
                graph[(name, i)] = (methods.to_numpy, (self._name, i), dtype)
            chunks = (tuple(lengths),)
        return Array(graph, name, chunks, dtype)

    @property
    def values(self) -> Any:
        """Same as :meth:`to_array`."""
        return self.to_array()

    # ------------------------------------------------------------------ element-wise math
    __add__ = _binary(operator.add)
    __sub__ = _binary(operator.sub)
    __mul__ = _binary(operator.mul)
    __truediv__ = _binary(operator.truediv)
    __floordiv__ = _binary(operator.floordiv)
    __mod__ = _binary(operator.mod)
    __pow__ = _binary(operator.pow)
    __radd__ = _binary(operator.add, reflected=True)
    __rsub__ = _binary(operator.sub, reflected=True)
    __rmul__ = _binary(operator.mul, reflected=True)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __rfloordiv__ = _binary(operator.floordiv, reflected=True)
    __rmod__ = _binary(operator.mod, reflected=True)
    __rpow__ = _binary(operator.pow, reflected=True)
    __and__ = _binary(operator.and_)
    __or__ = _binary(operator.or_)
    __xor__ = _binary(operator.xor)
    __rand__ = _binary(operator.and_, reflected=True)
    __ror__ = _binary(operator.or_, reflected=True)
    __rxor__ = _binary(operator.xor, reflected=True)
    __eq__ = _binary(operator.eq)  # type: ignore[assignment]
    __ne__ = _binary(operator.ne)  # type: ignore[assignment]
    __lt__ = _binary(operator.lt)
    __le__ = _binary(operator.le)
    __gt__ = _binary(operator.gt)
    __ge__ = _binary(operator.ge)
    __neg__ = _unary(operator.neg)
    __invert__ = _unary(operator.invert)
    __abs__ = _unary(operator.abs)
    __hash__ = None  # type: ignore[assignment]


class DataFrame(_Frame):
    """A lazy table split into partitions of rows, each a ``pandas.DataFrame``."""

    @property
    def columns(self) -> pd.Index:
        """The column names."""
        return self._meta.columns

    @property
    def dtypes(self) -> pd.Series:
        """The dtype of each column."""
        return self._meta.dtypes

    def __iter__(self):
        return iter(self._meta.columns)

    def __getitem__(self, key: Any) -> "DataFrame | Series":
        """A column (``df["a"]``), columns (``df[["a", "b"]]``) or rows (``df[df["a"] > 0]``)."""
        if isinstance(key, Series):
            if not pd.api.types.is_bool_dtype(key._meta.dtype):
                raise TypeError(f"a row filter must be a boolean Series, not dtype "
                                f"{key._meta.dtype}")
            return partitionwise(methods.filter_rows, self, key, meta=self._meta,
                                 keeps_rows=False)
        if isinstance(key, list):
            self._check_columns(key)
            return partitionwise(operator.getitem, self, list(key), prefix="getitem")
        if isinstance(key, Hashable) and not isinstance(key, (slice, tuple)):
            self._check_columns([key])
            return partitionwise(operator.getitem, self, key, prefix="getitem")
        raise TypeError(f"cannot index a distml DataFrame with {type(key).__name__} {key!r}: "
                        f"use a column name, a list of them or a boolean Series")

    def __getattr__(self, attr: str) -> "Series":
        meta = self.__dict__.get("_meta")
        if meta is not None and attr in meta.columns:
            return self[attr]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {c for c in self.columns if isinstance(c, str)})

    def assign(self, **columns: Any) -> "DataFrame":
        """A frame with columns added or replaced.

        Values may be distml Series partitioned like this frame, Scalars, plain scalars, or
        callables that take this frame and return one of those.
        """
        return self._assign(list(columns), list(columns.values()))

    def _assign(self, names: list, values: list) -> "DataFrame":
        checked = []
        for name, value in zip(names, values):
            if callable(value) and not isinstance(value, (_Frame, Scalar)):
                value = value(self)
            if isinstance(value, DataFrame):
                raise TypeError(f"cannot assign a DataFrame to column {name!r}")
            if isinstance(value, (pd.DataFrame, pd.Series, pd.Index, np.ndarray, list)):
                raise TypeError(f"cannot assign a {type(value).__name__} to column {name!r}: "
                                f"its rows do not follow the partitions; use a distml Series")
            checked.append(value)
        return partitionwise(methods.assign, self, names, *checked, prefix="assign")

    def __setitem__(self, key: Hashable, value: Any) -> None:
        if not isinstance(key, Hashable) or isinstance(key, (tuple, slice)):
            raise TypeError(f"column names must be hashable scalars, not {key!r}")
        new = self._assign([key], [value])
        self._graph, self._name, self._meta = new._graph, new._name, new._meta
        self._divisions = new._divisions  # same rows: a positional index stays one

    def set_index(self, column: Hashable, sorted: bool = False, drop: bool = True,
                  npartitions: int | None = None) -> "DataFrame":
        """The frame indexed by ``column``, sorted by it across partitions, with known
        divisions; see :func:`distml.dataframe.indexing.set_index`."""
        from distml.dataframe.indexing import set_index

        return set_index(self, column, sorted=sorted, drop=drop, npartitions=npartitions)

    def __repr__(self) -> str:
        return (f"DataFrame<{self._name}, npartitions={self._npartitions}, "
                f"columns={list(self._meta.columns)}>")


class Series(_Frame):
    """A lazy column split into partitions of rows, each a ``pandas.Series``."""

    @property
    def name(self) -> Hashable:
        """The series' name (its column name)."""
        return self._meta.name

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the values."""
        return self._meta.dtype

    def __getitem__(self, key: Any) -> "Series":
        """Rows where a boolean Series is true: ``s[s > 0]``."""
        if isinstance(key, Series) and pd.api.types.is_bool_dtype(key._meta.dtype):
            return partitionwise(methods.filter_rows, self, key, meta=self._meta,
                                 keeps_rows=False)
        raise TypeError(f"a distml Series can only be indexed by a boolean Series, "
                        f"not {type(key).__name__}")

    def __repr__(self) -> str:
        return (f"Series<{self._name}, npartitions={self._npartitions}, name={self.name!r}, "
                f"dtype={self.dtype}>")
