"""Estimate how many bytes a value occupies, cheaply, for placement decisions and memory limits."""

from __future__ import annotations

import sys
from typing import Any

_CONTAINER_SAMPLE = 10
#: Levels of containers and objects looked into; below, ``sys.getsizeof`` (cycles end here too).
_MAX_DEPTH = 4
#: Attributes of one object counted one by one (more are sampled).
_MAX_ATTRIBUTES = 1000


def sizeof(value: Any, _depth: int = 0) -> int:
    """Bytes held by ``value``: exact for buffers and numpy/pandas objects, sampled for
    containers (the first few items stand for the rest), the sum of the attributes for other
    objects (a dataclass of arrays, a fitted estimator), ``sys.getsizeof`` otherwise."""
    if _depth > _MAX_DEPTH:
        return _shallow(value)
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
        per = sum(sizeof(v, _depth + 1) for v in sample) // len(sample)
        return sys.getsizeof(value) + n * per
    if isinstance(value, dict):
        return _dict_size(value, _depth)
    memory_usage = getattr(value, "memory_usage", None)
    if callable(memory_usage) and hasattr(value, "columns"):
        try:
            return int(memory_usage(deep=True).sum())
        except Exception:  # noqa: BLE001 - fall back to the generic estimate
            pass
    if _is_plain_instance(value):
        # attributes differ from each other (a few numbers, then an array): all are counted
        held = _dict_size(getattr(value, "__dict__", {}), _depth, _MAX_ATTRIBUTES)
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                    held += sizeof(getattr(value, name), _depth + 1)
        return _shallow(value) + held
    return _shallow(value)


def _dict_size(value: dict, depth: int, sample: int = _CONTAINER_SAMPLE) -> int:
    """Size of a dict whose first ``sample`` items stand for the rest."""
    n = len(value)
    if n == 0:
        return sys.getsizeof(value)
    items = list(value.items())[:sample]
    per = sum(sizeof(k, depth + 1) + sizeof(v, depth + 1) for k, v in items) // len(items)
    return sys.getsizeof(value) + n * per


def _is_plain_instance(value: Any) -> bool:
    """An instance of a class defined outside the interpreter's core: its attributes are held
    by it (unlike a class's, a module's or a function's, which are shared)."""
    return not isinstance(value, type) and type(value).__module__ != "builtins"


def _shallow(value: Any) -> int:
    try:
        return sys.getsizeof(value)
    except TypeError:
        return 64
