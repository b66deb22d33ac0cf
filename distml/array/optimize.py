"""Graph optimization before submission: cull to the wanted keys, fuse per-block chains.

A task ``A`` is fused into (inlined as a nested task of) its dependent ``B`` when ``B`` is
the only task that needs ``A`` and either ``A`` is ``B``'s only dependency (a linear chain)
or ``B`` is a per-block task (``A`` and all of ``B``'s dependencies have ``B``'s block
index).  Elementwise expressions and the first step of a reduction thus become one task per
block, while tree reductions, which combine several blocks, keep their parallelism.
Results already on a cluster (futures) and requested keys are never inlined.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from distml.graph import wire_key

__all__ = ["optimize", "cull_graph", "fuse"]


def _is_task(value: Any) -> bool:
    return type(value) is tuple and len(value) > 0 and callable(value[0])


def _inlinable(value: Any) -> bool:
    return _is_task(value) or isinstance(value, np.ndarray)


def _find_deps(value: Any, keys: Mapping[Hashable, Any], out: set) -> None:
    """Add the graph keys that ``value`` references to ``out``."""
    typ = type(value)
    if typ is tuple:
        if value and callable(value[0]):
            for a in value[1:]:
                _find_deps(a, keys, out)
            return
        try:
            if value in keys:
                out.add(value)
                return
        except TypeError:
            pass
        for a in value:
            _find_deps(a, keys, out)
    elif typ is list:
        for a in value:
            _find_deps(a, keys, out)
    elif typ is dict:
        for a in value.values():
            _find_deps(a, keys, out)
    elif typ is str and value in keys:
        out.add(value)


def _substitute(value: Any, key: Hashable, replacement: Any) -> Any:
    """``value`` with every reference to ``key`` replaced by ``replacement``."""
    typ = type(value)
    if typ is tuple:
        if value and callable(value[0]):
            return (value[0], *[_substitute(a, key, replacement) for a in value[1:]])
        try:
            if value == key:
                return replacement
        except (TypeError, ValueError):
            pass
        return tuple(_substitute(a, key, replacement) for a in value)
    if typ is list:
        return [_substitute(a, key, replacement) for a in value]
    if typ is dict:
        return {k: _substitute(v, key, replacement) for k, v in value.items()}
    if typ is str and value == key:
        return replacement
    return value


def _flatten(keys: Any) -> list:
    if isinstance(keys, list):
        return [k for sub in keys for k in _flatten(sub)]
    return [keys]


def dependencies(dsk: Mapping) -> dict[Hashable, set]:
    """The keys each task of ``dsk`` references."""
    deps: dict[Hashable, set] = {}
    for k, v in dsk.items():
        found: set = set()
        if _is_task(v) or type(v) in (list, dict):
            _find_deps(v, dsk, found)
        deps[k] = found
    return deps


def cull_graph(dsk: Mapping, keys: Any) -> dict:
    """The part of ``dsk`` needed to compute ``keys`` (a key or nested list of keys)."""
    deps = dependencies(dsk)
    out: dict = {}
    stack = [k for k in _flatten(keys)]
    missing = [k for k in stack if k not in dsk]
    if missing:
        raise KeyError(f"key(s) not in the graph: {missing[:5]}")
    while stack:
        k = stack.pop()
        if k in out:
            continue
        out[k] = dsk[k]
        stack.extend(d for d in deps[k] if d not in out)
    return out


def _index(key: Hashable) -> tuple | None:
    return key[1:] if type(key) is tuple else None


def fuse(dsk: Mapping, keys: Any) -> dict:
    """Inline single-use per-block tasks into their dependent (see the module docstring)."""
    protected = {wire_key(k) for k in _flatten(keys)}
    deps = dependencies(dsk)
    dependents: dict[Hashable, set] = {k: set() for k in dsk}
    for k, ds in deps.items():
        for d in ds:
            dependents[d].add(k)
    per_block = {k: bool(ds) and _index(k) is not None
                 and all(_index(d) == _index(k) for d in ds) for k, ds in deps.items()}
    single = {k: len(ds) == 1 for k, ds in deps.items()}
    out = dict(dsk)
    for a in _topological(deps):
        if wire_key(a) in protected or not _inlinable(out[a]) or len(dependents[a]) != 1:
            continue
        (b,) = dependents[a]
        if not _is_task(out[b]) or not (single[b] or per_block[b]):
            continue
        out[b] = _substitute(out[b], a, out.pop(a))
        deps[b] = (deps[b] - {a}) | deps[a]
        for d in deps[a]:
            dependents[d].discard(a)
            dependents[d].add(b)
    return out


def _topological(deps: Mapping[Hashable, set]) -> list:
    """Keys with every dependency before its dependents."""
    done: set = set()
    result: list = []
    for root in deps:
        stack = [(root, False)]
        while stack:
            k, expanded = stack.pop()
            if k in done:
                continue
            if expanded:
                done.add(k)
                result.append(k)
                continue
            stack.append((k, True))
            stack.extend((d, False) for d in deps[k] if d not in done)
    return result


def optimize(dsk: Mapping, keys: Any) -> dict:
    """Cull ``dsk`` to ``keys`` and fuse per-block chains; ``keys`` stay in the result."""
    return fuse(cull_graph(dsk, keys), keys)
