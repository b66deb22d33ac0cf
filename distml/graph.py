"""Task graphs: convert Dask-style graphs to wire form, validate, cull, order and run them.

A graph maps keys to values.  A key is a ``str`` or a tuple such as ``("x", 0, 1)``.  A
value is a task ``(func, arg, ...)``, a literal, or another key (an alias).  Task arguments
that are keys of the graph are references to that key's result; arguments may also be
nested tasks, lists, tuples and dicts of these.

The runtime moves keys between machines as strings (see :func:`wire_key`) and tasks as
:class:`Task` objects whose references are explicit :class:`Ref` objects, so that workers
never have to guess whether a string argument is data or a key.  The graph algorithms
(:func:`check_graph`, :func:`cull`, :func:`order`) are iterative so that very long chains do
not hit Python's recursion limit.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Container, Hashable, Iterable, Mapping
from typing import Any

from distml.errors import CycleError, GraphError

__all__ = [
    "Ref",
    "Task",
    "check_graph",
    "cull",
    "execute_task",
    "get_sync",
    "identity",
    "normalize_graph",
    "order",
    "to_task",
    "wire_key",
]


def identity(x: Any) -> Any:
    """Return ``x``; the function of literal and alias tasks (pickled by reference)."""
    return x


# ---------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------


def _canonical_part(part: Any, key: Any) -> str | int | tuple:
    """Normalize one element of a tuple key so that equal keys give equal strings.

    ``str`` subclasses and integer-likes (``numpy.int64``, ``bool``) compare and hash like
    plain ``str``/``int`` but have a different ``repr``, so they are converted first.
    """
    if isinstance(part, str):
        return str.__str__(part)
    if isinstance(part, tuple):
        return tuple([_canonical_part(p, key) for p in part])
    if hasattr(type(part), "__index__"):
        return int(operator.index(part))
    raise GraphError(
        f"invalid key {key!r}: keys must be str or tuples of str, int and such tuples, "
        f"starting with a str (got element {part!r} of type {type(part).__name__})"
    )


def wire_key(key: Hashable) -> str:
    """Return the string form of a graph key used on the wire and in the scheduler.

    A ``str`` is returned unchanged; a tuple key becomes its canonical ``repr``, e.g.
    ``"('x', 0, 1)"``.  Anything else raises :class:`GraphError`.
    """
    if type(key) is str:
        return key
    if type(key) is tuple and key and isinstance(key[0], str):
        for part in key:
            if type(part) is not str and type(part) is not int:
                return repr(tuple([_canonical_part(p, key) for p in key]))
        return repr(key)
    if isinstance(key, str):
        return str.__str__(key)
    raise GraphError(
        f"invalid key {key!r} of type {type(key).__name__}: keys must be str or tuples "
        f"whose first element is a str, e.g. ('x', 0)"
    )


# ---------------------------------------------------------------------------------------
# Canonical tasks
# ---------------------------------------------------------------------------------------


class Ref:
    """A reference to the result of the task with wire key ``key``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> tuple:
        return (Ref, (self.key,))

    def __eq__(self, other: object) -> bool:
        if type(other) is not Ref:
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash((Ref, self.key))

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"


class Task:
    """A call ``func(*args, **kwargs)`` whose arguments may hold :class:`Ref` and ``Task``.

    Nested ``Task`` objects in the arguments run inline, before the outer call.
    """

    __slots__ = ("func", "args", "kwargs")

    def __init__(
        self, func: Callable, args: Iterable = (), kwargs: dict[str, Any] | None = None
    ) -> None:
        self.func = func
        self.args = args if type(args) is tuple else tuple(args)
        self.kwargs = kwargs or None

    def __reduce__(self) -> tuple:
        return (Task, (self.func, self.args, self.kwargs))

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", None) or repr(self.func)
        if self.kwargs:
            return f"Task({name}, {self.args!r}, {self.kwargs!r})"
        return f"Task({name}, {self.args!r})"


def _is_task_tuple(obj: Any) -> bool:
    """Whether ``obj`` is a Dask-style task tuple ``(callable, arg, ...)``."""
    return type(obj) is tuple and len(obj) > 0 and callable(obj[0])


def _is_key_like(obj: tuple) -> bool:
    """Whether a tuple has the form of a key, like ``("x", 0)``, even if it is not a key."""
    try:
        wire_key(obj)
    except GraphError:
        return False
    return True


def _convert(obj: Any, wire: Mapping[Any, str], found: set[str],
             external: Callable[[Any], str | None] | None = None) -> Any:
    """Rewrite one Dask-style value: keys become ``Ref``, task tuples become ``Task``.

    ``wire`` maps each graph key to its wire key; referenced wire keys are added to ``found``.
    ``external`` maps objects standing for results outside the graph (futures) to their keys.
    """
    if external is not None:
        w = external(obj)
        if w is not None:
            found.add(w)
            return Ref(w)
    typ = type(obj)
    if typ is tuple:
        if obj and callable(obj[0]):
            return Task(obj[0], tuple([_convert(a, wire, found, external) for a in obj[1:]]))
        try:
            w = wire.get(obj)
        except TypeError:  # a tuple holding unhashable items cannot be a key
            w = None
        if w is not None:
            found.add(w)
            return Ref(w)
        if obj and isinstance(obj[0], str) and _is_key_like(obj):
            return obj
        return tuple([_convert(a, wire, found, external) for a in obj])
    if typ is list:
        return [_convert(a, wire, found, external) for a in obj]
    if typ is dict:
        return {k: _convert(v, wire, found, external) for k, v in obj.items()}
    if isinstance(obj, str):
        w = wire.get(obj)
        if w is not None:
            found.add(w)
            return Ref(w)
    return obj


def normalize_graph(dsk: Mapping, external: Callable[[Any], str | None] | None = None,
                    ) -> dict[str, tuple[Task, frozenset[str]]]:
    """Convert a Dask-style graph to ``{wire_key: (Task, dependencies)}``.

    ``external(obj)`` returns the key of an object that stands for a result already on the
    cluster (a future), which then becomes a reference; ``None`` for other objects.

    Literals and aliases become ``Task(identity, (value,))`` so every entry is run the same
    way.  A string or tuple argument is a reference only if it is a key of ``dsk``.  Other
    tuples are data: one shaped like a key (``("x", 0)``) is kept as is, any other has its
    elements converted like a list's.
    """
    wire = {key: wire_key(key) for key in dsk}
    if len(set(wire.values())) != len(wire):
        seen: dict[str, Hashable] = {}
        for key, w in wire.items():
            if w in seen:
                raise GraphError(f"keys {seen[w]!r} and {key!r} have the same wire form {w!r}")
            seen[w] = key
    out: dict[str, tuple[Task, frozenset[str]]] = {}
    for key, value in dsk.items():
        found: set[str] = set()
        conv = _convert(value, wire, found, external)
        task = conv if _is_task_tuple(value) else Task(identity, (conv,))
        out[wire[key]] = (task, frozenset(found))
    return out


_CONTAINERS = (list, tuple, dict)


def _substitute(obj: Any, convert: Callable[[Any], str | None], found: set[str]) -> Any:
    """Replace objects that ``convert`` maps to a wire key by ``Ref``, through containers."""
    w = convert(obj)
    if w is not None:
        found.add(w)
        return Ref(w)
    typ = type(obj)
    if typ is list:
        return [_substitute(a, convert, found) for a in obj]
    if typ is tuple:
        return tuple([_substitute(a, convert, found) for a in obj])
    if typ is dict:
        return {k: _substitute(v, convert, found) for k, v in obj.items()}
    return obj


def to_task(
    func: Callable,
    args: Iterable,
    kwargs: Mapping[str, Any] | None,
    convert: Callable[[Any], str | None],
) -> tuple[Task, frozenset[str]]:
    """Build ``Task(func, args, kwargs)`` for ``Client.submit`` and return its dependencies.

    Every object (searched through lists, tuples and dict values) for which ``convert``
    returns a wire key is replaced by ``Ref`` of that key; ``convert`` returns None for
    ordinary values.  Plain scalar arguments take a fast path with no copying.
    """
    args = args if type(args) is tuple else tuple(args)
    values = list(kwargs.values()) if kwargs else []
    for a in (*args, *values):
        if type(a) in _CONTAINERS or convert(a) is not None:
            break
    else:
        return Task(func, args, dict(kwargs) if kwargs else None), frozenset()
    found: set[str] = set()
    new_args = tuple([_substitute(a, convert, found) for a in args])
    new_kwargs = {k: _substitute(v, convert, found) for k, v in kwargs.items()} if kwargs else None
    return Task(func, new_args, new_kwargs), frozenset(found)


# ---------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------

_NESTED = frozenset({Ref, Task, list, tuple, dict})


def _resolve(obj: Any, data: Mapping[str, Any]) -> Any:
    """Return ``obj`` with ``Ref`` replaced by data and nested ``Task`` executed."""
    typ = type(obj)
    if typ is Ref:
        return data[obj.key]
    if typ is Task:
        return execute_task(obj, data)
    if typ is list:
        return [_resolve(a, data) for a in obj]
    if typ is tuple:
        return tuple([_resolve(a, data) for a in obj])
    if typ is dict:
        return {k: _resolve(v, data) for k, v in obj.items()}
    return obj


def execute_task(task: Task, data: Mapping[str, Any]) -> Any:
    """Run ``task`` with every ``Ref`` replaced by ``data[ref.key]``; the task is not changed.

    Containers are rebuilt rather than modified, so a task can be run again (e.g. retried).
    """
    args = task.args
    for a in args:
        if type(a) in _NESTED:
            args = tuple([_resolve(arg, data) for arg in args])
            break
    kwargs = task.kwargs
    if kwargs:
        return task.func(*args, **{k: _resolve(v, data) for k, v in kwargs.items()})
    return task.func(*args)


# ---------------------------------------------------------------------------------------
# Graph algorithms on {wire_key: frozenset(dependency wire keys)}
# ---------------------------------------------------------------------------------------


_CYCLE_SHOWN = 20


def _cycle_error(path: list[str]) -> CycleError:
    """Build the error for a cycle given as ``[k0, k1, ...]`` where each depends on the next.

    The cycle starts at its smallest key so the message does not depend on search order;
    a very long cycle shows only its first and last keys.
    """
    start = path.index(min(path))
    keys = [repr(k) for k in path[start:] + path[: start + 1]]
    if len(keys) > _CYCLE_SHOWN:
        hidden = len(keys) - _CYCLE_SHOWN
        keys = keys[: _CYCLE_SHOWN // 2] + [f"... {hidden} more ..."] + keys[-_CYCLE_SHOWN // 2 :]
    return CycleError("cycle in graph: " + " -> ".join(keys))


def _heights(deps: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """Return each key's height (1 + the longest chain of dependencies below it).

    The dict is filled dependencies first, so its order is topological.  Raises
    :class:`CycleError` on a cycle; dependencies that are not keys of ``deps`` are ignored.
    Iterative depth-first search, O(V+E).
    """
    height: dict[str, int] = {}
    path: list[str] = []  # the keys being expanded, each a dependency of the one before
    on_path: set[str] = set()
    for root in deps:
        if root in height:
            continue
        # The stack holds plain keys (no iterator objects) to keep the garbage collector idle.
        # A key is expanded the first time it is on top and finished the second time.
        stack = [root]
        while stack:
            k = stack[-1]
            if k in height:
                stack.pop()
            elif k in on_path:
                stack.pop()
                path.pop()
                on_path.discard(k)
                h = 0
                for d in deps[k]:
                    hd = height.get(d, 0)
                    if hd > h:
                        h = hd
                height[k] = h + 1
            else:
                path.append(k)
                on_path.add(k)
                for d in deps[k]:
                    if d in on_path:
                        raise _cycle_error(path[path.index(d) :])
                    if d not in height and d in deps:
                        stack.append(d)
    return height


def check_graph(deps: Mapping[str, frozenset[str]], external: Container[str] = ()) -> None:
    """Raise if ``deps`` is not a valid graph.

    Every dependency must be a key of ``deps`` or be in ``external`` (results that already
    exist), else :class:`GraphError`; a cycle raises :class:`CycleError` naming its keys.
    """
    for key, ds in deps.items():
        for d in ds:
            if d not in deps and d not in external:
                missing = min(x for x in ds if x not in deps and x not in external)
                raise GraphError(
                    f"task {key!r} depends on {missing!r}, which is not in the graph"
                )
    _heights(deps)


def cull(deps: Mapping[str, frozenset[str]], keys: Iterable[str]) -> set[str]:
    """Return the keys of ``deps`` needed to compute ``keys`` (themselves and their deps).

    Keys and dependencies that are not in ``deps`` are left out of the result.
    """
    needed: set[str] = set()
    stack = [k for k in keys if k in deps]
    while stack:
        k = stack.pop()
        if k in needed:
            continue
        needed.add(k)
        stack.extend(d for d in deps[k] if d not in needed and d in deps)
    return needed


_DIGITS = re.compile(r"(\d+)")


def _natural_key(key: str) -> tuple[tuple, str]:
    """Sort key that compares digit runs as numbers, so ``('x', 2)`` precedes ``('x', 10)``.

    The key itself breaks ties such as ``'x01'`` against ``'x1'``.
    """
    parts: list = _DIGITS.split(key)
    parts[1::2] = map(int, parts[1::2])
    return tuple(parts), key


def order(deps: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """Return a static priority per key (0 runs first) that keeps intermediate memory low.

    The order is topological.  Output keys (that nothing depends on) are taken in natural
    key order, and each is finished by a depth-first post-order walk before the next one
    starts, so one branch completes (and its intermediates can be freed) before another
    begins.  At each task the dependency with the tallest subtree goes first: its chain of
    intermediates is released before the shorter branches' results must be held.
    Dependencies that are not keys of ``deps`` are ignored.  ``deps`` must be acyclic;
    a cycle raises :class:`CycleError`.
    """
    height = _heights(deps)

    def rank(k: str) -> tuple[int, tuple[tuple, str]]:
        return -height[k], _natural_key(k)

    has_dependents: set[str] = set()
    for ds in deps.values():
        has_dependents.update(ds)
    terminals = sorted((k for k in deps if k not in has_dependents), key=_natural_key)

    result: dict[str, int] = {}
    opened: set[str] = set()
    for root in terminals:
        stack = [root]  # expanded when first on top, numbered when on top again
        while stack:
            k = stack[-1]
            if k in result:
                stack.pop()
            elif k in opened:
                stack.pop()
                result[k] = len(result)
            else:
                opened.add(k)
                ds = deps[k]
                if len(ds) > 1:
                    stack.extend(reversed(sorted([d for d in ds if d in height], key=rank)))
                else:
                    stack.extend([d for d in ds if d in height])
    return result


# ---------------------------------------------------------------------------------------
# Local reference scheduler
# ---------------------------------------------------------------------------------------


def flatten_keys(keys: Any, out: list[Hashable]) -> None:
    """Append the keys of a (nested) list of keys to ``out``."""
    if type(keys) is list:
        for k in keys:
            flatten_keys(k, out)
    else:
        out.append(keys)


def pack_results(keys: Any, results: Mapping[str, Any]) -> Any:
    """Arrange results in the (nested) list shape of ``keys``."""
    if type(keys) is list:
        return [pack_results(k, results) for k in keys]
    return results[wire_key(keys)]


def get_sync(dsk: Mapping, keys: Any) -> Any:
    """Compute ``keys`` of ``dsk`` sequentially in this thread; a reference scheduler.

    ``keys`` is one key or a nested list of keys; the result has the same shape.  Only the
    tasks needed are run, in :func:`order`, and intermediates are dropped once unused.
    """
    flat: list[Hashable] = []
    flatten_keys(keys, flat)
    wanted = {wire_key(k) for k in flat}
    graph = normalize_graph(dsk)
    for w in sorted(wanted):
        if w not in graph:
            raise GraphError(f"key {w!r} is not in the graph")
    deps = {k: d for k, (_, d) in graph.items()}
    deps = {k: deps[k] for k in cull(deps, wanted)}
    check_graph(deps)
    priority = order(deps)

    waiting: dict[str, int] = dict.fromkeys(deps, 0)
    for ds in deps.values():
        for d in ds:
            waiting[d] += 1
    data: dict[str, Any] = {}
    for key in sorted(deps, key=priority.__getitem__):
        data[key] = execute_task(graph[key][0], data)
        for d in deps[key]:
            waiting[d] -= 1
            if waiting[d] == 0 and d not in wanted:
                del data[d]
    return pack_results(keys, data)
