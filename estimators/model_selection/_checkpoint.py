"""Durable record of a search's scored candidate-folds, so an interrupted search resumes.

Each scored candidate on one fold is appended to a JSON-lines file as soon as its result
reaches the client (written and fsynced before the next one is handled).  A line is keyed by a
hash of the estimator with the candidate's parameters, the fold's train/test indices, the data
and the scoring, so a rerun with the same arguments finds it and a changed argument does not.
A line cut short by a crash is ignored.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Checkpoint"]


def _encode(value: Any) -> Any:
    """JSON form of a result field: numbers (nan and inf as strings), dicts, strings, None."""
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else repr(v)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


class Checkpoint:
    """The results already scored by earlier runs of a search (``path``: a JSON-lines file,
    created with its folder on first write)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.scored: dict[str, dict] = {}
        if self.path.is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a directory; pass a file path")
        if self.path.exists():
            with self.path.open() as f:
                for n, line in enumerate(f, 1):
                    try:
                        entry = json.loads(line)
                        self.scored[entry["key"]] = _decode(entry["result"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("checkpoint %s: line %d is incomplete, ignored",
                                       self.path, n)
        self._file = None

    def get(self, key: str) -> dict | None:
        """The stored result of candidate-fold ``key``, or None."""
        found = self.scored.get(key)
        return None if found is None else dict(found)

    def record(self, key: str, result: dict) -> None:
        """Append one scored candidate-fold and flush it to disk."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size > 0 and \
                self.path.read_bytes()[-1:] != b"\n"
            self._file = self.path.open("a")
            if torn:  # a crash cut the last line: start on a fresh one
                self._file.write("\n")
        fields = {k: v for k, v in result.items() if k != "warnings"}
        self._file.write(json.dumps({"key": key, "result": _encode(fields)}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.scored[key] = fields

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
