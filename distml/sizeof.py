"""Estimate how many bytes a value occupies, cheaply, for placement decisions and memory limits."""

from __future__ import annotations

import sys
from typing import Any

_CONTAINER_SAMPLE = 10


def sizeof(value: Any) -> int:
    """Bytes held by ``value``: exact for buffers and numpy/pandas objects, sampled for
    containers (the first few items stand for the rest), ``sys.getsizeof`` otherwise."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, (list, tuple, set, frozenset)):
        n = len(value)
        if n == 0:
            return sys.getsizeof(value)
        sample = list(value)[:_CONTAINER_SAMPLE] if not isinstance(value, (list, tuple)) \
            else value[:_CONTAINER_SAMPLE]
        return sys.getsizeof(value) + n * sum(sizeof(v) for v in sample) // len(sample)
    if isinstance(value, dict):
        n = len(value)
        if n == 0:
            return sys.getsizeof(value)
        items = list(value.items())[:_CONTAINER_SAMPLE]
        per = sum(sizeof(k) + sizeof(v) for k, v in items) // len(items)
        return sys.getsizeof(value) + n * per
    memory_usage = getattr(value, "memory_usage", None)
    if callable(memory_usage) and hasattr(value, "columns"):
        try:
            return int(memory_usage(deep=True).sum())
        except Exception:  # noqa: BLE001 - fall back to the generic estimate
            pass
    try:
        return sys.getsizeof(value)
    except TypeError:
        return 64
