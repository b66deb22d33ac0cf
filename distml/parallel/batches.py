"""What a joblib batch becomes on the cluster: one task whose function is pickled once per
``Parallel`` call, whose arguments are the calls' arguments, and whose large arguments are
references to data placed on the workers once.

joblib hands the backend ``BatchedCalls``: a list of ``(function, args, kwargs)`` and the backend
to use for parallel calls made inside them. When every call has the same function (the usual
``Parallel()(delayed(f)(x) for x in ...)``), the task's function is a :class:`SameFunctionBatch`
made once per function, so the client pickles the function once (its codec caches by identity) and
each worker unpickles it once (its codec caches by bytes); only the arguments travel per batch.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
import weakref
from typing import Any, Callable, Iterable

from distml.sizeof import sizeof

logger = logging.getLogger(__name__)

#: Values of these types are never placed on the cluster separately (``SCALAR_TYPES``: for
#: the exact-type check on the hot path; subclasses such as numpy's floats are measured).
_SCALARS = (int, float, complex, bool, type(None), str, bytes, range, slice)
SCALAR_TYPES = frozenset(_SCALARS)


class Placed:
    """Stands, in a packed batch, for the ``index``-th value placed on the cluster (passed to
    the task as a separate argument, so that the worker resolves it)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return Placed, (self.index,)


class PackedCalls:
    """The calls of a batch as one opaque argument: the runtime does not search it for futures
    (with thousands of calls per batch, that search cost more than running them). Calls listed in
    ``with_placed`` hold :class:`Placed` markers among their arguments.

    ``positional``: the usual ``delayed(f)(x)`` batch, one function, scalar positional arguments
    and no keywords. ``calls`` then holds only the argument tuples, which pickle smaller and run
    through ``itertools.starmap``.
    """

    __slots__ = ("calls", "with_placed", "positional")

    def __init__(self, calls: list, with_placed: list[int], positional: bool = False):
        self.calls = calls
        self.with_placed = with_placed
        self.positional = positional

    def __reduce__(self):
        return PackedCalls, (self.calls, self.with_placed, self.positional)

    def unpack(self, placed: tuple) -> list:
        """The calls with placed values put back."""
        calls = self.calls
        if not self.with_placed:
            return calls
        calls = list(calls)
        for i in self.with_placed:
            call = calls[i]
            calls[i] = call[:-2] + (tuple(_resolve(a, placed) for a in call[-2]),
                                    {k: _resolve(v, placed) for k, v in call[-1].items()})
        return calls


def _resolve(value: Any, placed: tuple) -> Any:
    return placed[value.index] if type(value) is Placed else value


def _with_nested_backend(nested: tuple[Any, int | None], run: Callable[[], list]) -> Any:
    """``run()`` with joblib's backend and ``n_jobs`` for parallel calls made inside in force;
    its results as :func:`compact_results` makes them."""
    from joblib import parallel_config

    backend, n_jobs = nested
    fresh_copy = getattr(backend, "fresh_copy", None)
    if fresh_copy is not None:  # the unpickled one is shared by this worker's batches
        backend = fresh_copy()
    with parallel_config(backend=backend, n_jobs=n_jobs):
        results = run()
    return compact_results(results)


class PickledResults:
    """A batch's results, pickled on the worker, that unpickle as the results themselves.

    The runtime sends a result with its completion message when it is small, judging first by
    its size in memory, which for Python objects is many times their pickled size (an int takes
    28 bytes in memory, 3 pickled): the results of a few hundred short calls would otherwise
    stay on the worker and cost the client a second round trip to fetch them.
    """

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob

    @property
    def nbytes(self) -> int:
        """What it holds in memory (the runtime's ``sizeof`` reads this)."""
        return len(self.blob)

    def __reduce__(self):
        return _unpickle_results, (self.blob,)


def _unpickle_results(blob: bytes) -> Any:
    from distml.protocol import serialize

    return serialize.loads([blob])


#: Room left in the completion message for the wrapper around the pickled results.
_WRAPPER_BYTES = 256
#: Results larger than this many times the inline limit in memory are not tried: even ints
#: (28 bytes in memory, 2 to 5 pickled) would not fit.
_PROBE_FACTOR = 16


def compact_results(results: list) -> Any:
    """On a worker, ``results`` pickled (:class:`PickledResults`) when that is what makes them
    small enough to travel with the completion message; else ``results`` as they are."""
    from distml.protocol import serialize
    from distml.worker.context import current_task

    task = current_task()
    worker = task.runner.worker if task is not None else None
    if worker is None:
        return results
    limit = worker.config.inline_result_bytes - _WRAPPER_BYTES
    in_memory = sizeof(results)
    if in_memory <= limit or in_memory > _PROBE_FACTOR * limit:
        return results  # sent inline as it is, or too large to be sent inline at all
    try:
        frames = serialize.dumps(results, out_of_band=False)
    except Exception:  # noqa: BLE001 - the runtime reports what cannot be pickled
        return results
    if len(frames) == 1 and len(frames[0]) <= limit:
        return PickledResults(bytes(frames[0]))
    return results


def _run_calls(nested: tuple[Any, int | None], calls: Iterable[tuple[Callable, tuple, dict]],
               ) -> Any:
    return _with_nested_backend(
        nested, lambda: [func(*args, **kwargs) for func, args, kwargs in calls])


class SameFunctionBatch:
    """Runs ``function`` on each ``(args, kwargs)`` of a batch, with ``nested`` (joblib's
    backend and n_jobs for parallel calls made inside) in force, as joblib's batches do."""

    def __init__(self, function: Callable, nested: tuple[Any, int | None]):
        self.function = function
        self.nested = nested
        # task keys and duration estimates are named after the user's function
        self.__name__ = getattr(function, "__name__", None) or type(function).__name__

    def __call__(self, packed: PackedCalls, *placed: Any) -> Any:
        function = self.function
        if packed.positional:
            return _with_nested_backend(self.nested,
                                        lambda: list(itertools.starmap(function, packed.calls)))
        return _run_calls(self.nested, ((function, a, k) for a, k in packed.unpack(placed)))


class MixedBatch:
    """Runs a batch whose calls have different functions (each pickled with its call)."""

    __name__ = "joblib-batch"

    def __init__(self, nested: tuple[Any, int | None]):
        self.nested = nested

    def __call__(self, packed: PackedCalls, *placed: Any) -> Any:
        return _run_calls(self.nested, packed.unpack(placed))


def _cheaply_sized(value: Any) -> bool:
    """Arrays, frames and containers: their size is known without pickling."""
    return isinstance(getattr(value, "nbytes", None), int) or hasattr(value, "memory_usage") \
        or isinstance(value, (list, tuple, dict, set, frozenset))


def pickled_nbytes(value: Any) -> int:
    """Bytes ``value`` takes pickled (fitted models and other objects of unknown size)."""
    total = 0

    def count(buffer: pickle.PickleBuffer) -> bool:
        nonlocal total
        total += memoryview(buffer).nbytes
        return False  # out of band: only its size matters here

    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=count)
    except Exception:  # noqa: BLE001 - not picklable by reference: it travels with its task
        return 0
    return total + len(stream)


class ArgumentPlacer:
    """Replaces large arguments by futures of copies placed on the workers, once per object.

    Placed objects are remembered by identity, with the object itself held so that the identity
    cannot pass to another object. Objects whose size needs pickling to know are measured once
    (remembered through a weak reference when they allow one, so nothing is kept alive).
    """

    def __init__(self, threshold: int):
        self.threshold = threshold
        self._lock = threading.Lock()
        #: id -> (object, its future on the cluster)
        self._placed: dict[int, tuple[Any, Any]] = {}
        #: id -> weak reference, for measured objects that stay inline
        self._small: dict[int, weakref.ref] = {}

    def place(self, client: Any, values: list, workers: list[str] | None) -> None:
        """Place ``values`` (the user's ``scatter=`` list) whatever their size."""
        todo = [v for v in values if self._placed_future(v) is None]
        if todo:
            futures = client.scatter(todo, workers=workers)
            with self._lock:
                for value, future in zip(todo, futures):
                    self._placed[id(value)] = (value, future)

    def substitute(self, client: Any, value: Any, workers: list[str] | None) -> Any:
        """``value``, or the future of its copy on the cluster if it is large."""
        if isinstance(value, _SCALARS) or (callable(value) and not hasattr(value, "get_params")):
            return value
        future = self._placed_future(value)
        if future is not None:
            return future
        if _cheaply_sized(value):
            if sizeof(value) < self.threshold:
                return value
        else:
            ref = self._small.get(id(value))
            if ref is not None and ref() is value:
                return value
            if pickled_nbytes(value) < self.threshold:
                try:
                    self._small[id(value)] = weakref.ref(value)
                except TypeError:  # no weak references to it: measured again next time
                    pass
                return value
        future = client.scatter(value, workers=workers)
        logger.debug("placed a %s argument on the cluster as %s", type(value).__name__,
                     future.key)
        with self._lock:
            self._placed[id(value)] = (value, future)
        return future

    def _placed_future(self, value: Any) -> Any:
        entry = self._placed.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else None

    def clear(self) -> None:
        """Forget every placed object (their copies are released with the futures)."""
        with self._lock:
            self._placed.clear()
            self._small.clear()
