"""Reading CSV files into a partitioned DataFrame, one partition per byte range of a file."""

from __future__ import annotations

import glob
import io
import os
import re
from typing import Any

import pandas as pd

from distml.dataframe.core import DataFrame
from distml.dataframe.indexing import reset_index
from distml.dataframe.scheduling import new_name

#: Bytes of the first file parsed on the client to learn the columns and dtypes.
SAMPLE_BYTES = 64 * 1024
_SCAN = 64 * 1024
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: Options that count rows from the start of a file, which a byte range cannot honour.
_UNSUPPORTED = ("skiprows", "skipfooter", "nrows", "chunksize", "iterator")


def parse_bytes(size: int | str) -> int:
    """A size in bytes from an int or a string such as ``"64MB"``, ``"1 KiB"`` or ``"500"``."""
    if isinstance(size, bool):
        raise ValueError(f"invalid size {size!r}")
    if isinstance(size, int):
        value = size
    elif isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", size)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(f"invalid size {size!r}: expected e.g. 65536, '64MB' or '1GiB'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise TypeError(f"size must be an int or a string like '64MB', not {type(size).__name__}")
    if value <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return value


def _expand(path: Any) -> list[str]:
    """The files named by a path, a glob pattern or a list of them, in sorted order."""
    patterns = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(os.fspath(pattern))
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if os.path.isfile(pattern) else [])
        if not matches:
            raise FileNotFoundError(f"no file matches {pattern!r}")
        files.extend(matches)
    return files


def _after_newline(f: Any, pos: int) -> int:
    """The position just after the first ``\\n`` at or after ``pos`` (end of file if none)."""
    f.seek(pos)
    while True:
        chunk = f.read(_SCAN)
        if not chunk:
            return pos
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)


def read_block(path: str, offset: int, length: int, skip_first_line: bool) -> bytes:
    """The whole lines of ``path`` belonging to the byte range ``[offset, offset + length)``.

    The range starts after the first newline at or past ``offset`` (at 0 for the first range of
    a file without a header line) and ends after the first newline at or past its end, so
    consecutive ranges share no line and miss none.
    """
    with open(path, "rb") as f:
        start = _after_newline(f, offset) if offset > 0 or skip_first_line else 0
        end = _after_newline(f, offset + length)
        if end <= start:
            return b""
        f.seek(start)
        return f.read(end - start)


def parse_block(data: bytes, names: list, kwargs: dict, meta: pd.DataFrame) -> pd.DataFrame:
    """Parse CSV lines without a header into a frame with columns ``names``."""
    if not data.strip():
        return meta
    return pd.read_csv(io.BytesIO(data), header=None, names=names, **kwargs)


def read_csv_block(path: str, offset: int, length: int, skip_first_line: bool, names: list,
                   kwargs: dict, meta: pd.DataFrame) -> pd.DataFrame:
    """One partition of :func:`read_csv`: read a byte range of a file and parse it. A row that
    does not parse is reported with the file and its line number in that file."""
    data = read_block(path, offset, length, skip_first_line)
    try:
        return parse_block(data, names, kwargs, meta)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ValueError(f"{path}: {_in_file_lines(path, offset, skip_first_line, str(exc))}") \
            from exc


def _in_file_lines(path: str, offset: int, skip_first_line: bool, message: str) -> str:
    """Rewrite pandas' "line N" (counted from the block's start) as a line of the file."""
    match = re.search(r"line (\d+)", message)
    if match is None:
        return message
    with open(path, "rb") as f:
        start = _after_newline(f, offset) if offset > 0 or skip_first_line else 0
        f.seek(0)
        before = f.read(start).count(b"\n")
    line = before + int(match.group(1))
    return f"line {line}: " + message[:match.start()] + f"line {line}" + message[match.end():]


def _sample(path: str) -> tuple[bytes, bytes]:
    """The first line of ``path`` and the whole lines of up to :data:`SAMPLE_BYTES` after it."""
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
        while b"\n" not in head:
            more = f.read(_SCAN)
            if not more:
                break
            head += more
        first, sep, rest = head.partition(b"\n")
        more = f.read(1)
    if more and b"\n" in rest:
        rest = rest[:rest.rindex(b"\n") + 1]
    return first + sep, rest


def read_csv(path: Any, blocksize: int | str | None = "64MB", header: Any = "infer",
             **kwargs: Any) -> DataFrame:
    """Read CSV files (a path, a glob pattern like ``"data/*.csv"``, or a list) lazily.

    Each file is cut into byte ranges of about ``blocksize`` bytes (``None``: one partition
    per file), moved to whole lines, and each range is read and parsed by pandas where its task
    runs.  The header is the first line of the first file (every file must start with the same
    header line), unless ``names=`` is given or ``header=None``.  Other keywords (``sep``,
    ``usecols``, ``dtype``, ``parse_dates``, ``na_values``, ...) go to ``pandas.read_csv``.
    Columns and dtypes are inferred from the first 64 KiB of the first file (text columns
    there are read as text in every partition); pass ``dtype=`` for numeric columns whose
    type only shows later (e.g. integers with missing values further on).  The rows are numbered
0, 1, ... across partitions and files, as one ``pandas.read_csv`` of them all would; the
divisions are known once the row counts are (after ``persist()`` or ``len()``).

    Limitations: quoted fields containing newlines are not supported (a range may start
    inside one); options counting rows from the start of a file (``skiprows``, ``nrows``,
    ``skipfooter``, ...) are rejected; the encoding must write ``\\n`` as that single byte.
    """
    for key in _UNSUPPORTED:
        if key in kwargs:
            raise ValueError(f"read_csv does not support {key}=: it counts rows from the start "
                             f"of a file, which partitions cannot see")
    if header not in ("infer", 0, None):
        raise ValueError(f"read_csv supports header='infer', 0 or None, not {header!r}")
    size = None if blocksize is None else parse_bytes(blocksize)
    files = _expand(path)
    names = kwargs.pop("names", None)
    has_header = header == 0 or (header == "infer" and names is None)
    first_line, sample = _sample(files[0])
    sample_path = files[0]
    if not has_header:
        sample = first_line + sample
    for other in files[1:]:  # a first file without rows tells no dtypes: look further
        if sample.strip():
            break
        line, sample = _sample(other)
        sample_path = other
        if not has_header:
            sample = line + sample
    if names is None:
        if has_header:
            if not first_line.strip():
                raise ValueError(f"{files[0]!r} has no header line")
            columns = pd.read_csv(io.BytesIO(first_line), nrows=0,
                                  **{**kwargs, "usecols": None, "index_col": None})
            names = list(columns.columns)
        else:
            width = pd.read_csv(io.BytesIO(sample), header=None, nrows=1,
                                **{**kwargs, "usecols": None, "index_col": None}).shape[1]
            names = list(range(width))
    else:
        names = list(names)
    try:
        sampled = pd.read_csv(io.BytesIO(sample), header=None, names=names, **kwargs)
    except pd.errors.ParserError as exc:  # a bad row near the start: say where, now
        raise ValueError(f"{sample_path}: {_in_file_lines(sample_path, 0, has_header, str(exc))}"
                         ) from exc
    meta = sampled.iloc[:0]
    user_dtype = kwargs.get("dtype")
    if len(sampled) and (user_dtype is None or isinstance(user_dtype, dict)):
        # Text in the sample means text in the whole column: read it so in every partition,
        # even those whose values all look like numbers.
        text = {c: t for c, t in meta.dtypes.items()
                if pd.api.types.is_string_dtype(t) and c not in (user_dtype or {})}
        if text:
            kwargs = {**kwargs, "dtype": {**(user_dtype or {}), **text}}

    name = new_name("read-csv-parse")
    graph: dict = {}
    for path_ in files:
        length = os.path.getsize(path_)
        step = size or max(length, 1)
        for offset in range(0, max(length, 1), step):
            graph[(name, len(graph))] = (read_csv_block, path_, offset, step, has_header,
                                         names, kwargs, meta)
    parsed = DataFrame(graph, name, meta, len(graph), None)
    if kwargs.get("index_col") not in (None, False):  # the rows are indexed by a column
        return parsed
    return reset_index(parsed, drop=True, prefix="read-csv")
