"""The ``"distml"`` joblib backend: ``Parallel`` batches run as tasks on a distml cluster.

``with joblib.parallel_config(backend="distml"):`` sends joblib's work (scikit-learn's ``n_jobs``
included) to the default client's cluster, or to a local cluster started on first use. Per
``Parallel`` call:

- batches of calls become tasks; the batch size follows the measured time per call so that a batch
  takes about :attr:`DistmlBackend.target_batch_seconds` (short calls are grouped by thousands,
  long ones go one by one);
- arguments larger than ``scatter_threshold`` bytes (arrays, frames, fitted models) are placed on
  the workers once and shared by every batch that uses them; ``scatter=[...]`` names some
  explicitly; batches go where their data is;
- a ``Parallel`` call inside a task runs on the cluster too, through the worker's client, its task
  giving up its thread while it waits (no deadlock however deep the nesting);
- results come back as soon as each batch finishes (small ones inline with the completion
  message), so ``return_as="generator"``/``"generator_unordered"`` and ``timeout=`` work;
- on the first error every other batch is cancelled on the cluster, running ones included, and
  the original exception is raised with the worker's traceback as its cause.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import operator
import threading
from typing import Any, Callable, Iterator

from joblib.parallel import ParallelBackendBase

from distml.parallel.batches import (SCALAR_TYPES, ArgumentPlacer, MixedBatch, PackedCalls,
                                     Placed, SameFunctionBatch)
from distml.parallel.callbacks import CallbackChannel
from distml.parallel.threads import total_threads

logger = logging.getLogger(__name__)

_local_client = None
_local_lock = threading.Lock()


def _client_for_backend() -> Any:
    """Inside a task, the worker's client; else the default client; else a local cluster's,
    started once per process (and said so in the log)."""
    from distml.client.client import Client, default_client
    from distml.worker.context import get_client, in_task

    if in_task():
        return get_client()
    client = default_client()
    if client is not None:
        return client
    global _local_client
    with _local_lock:
        if _local_client is None or _local_client.status != "running":
            _local_client = Client(set_as_default=False)
            atexit.register(_local_client.close)
            logger.info("joblib backend 'distml': no distml client, started a local cluster at "
                        "%s with %d workers", _local_client.scheduler_address,
                        len(_local_client.cluster.workers))
        return _local_client


class _BatchSizer:
    """joblib's auto batching, driven by the time per call measured on completed batches.

    The first batch holds one call; after each completion the size aims at ``target`` seconds
    per batch, growing at most ``max_growth`` times per step and shrinking at once when batches
    take too long. The largest batches measured so far set the estimate: smaller ones still in
    flight carry more latency per call and would hold the size back.

    The time per call is measured from dispatch to result, latency included, so it is never
    under-estimated: a size aimed at ``target`` from it takes at most about ``target`` when calls
    are alike, and growth needs no small cap for safety. Each step costs a round trip, and with
    short calls every batch costs more than its calls, so the cap is loose (it only guards
    against calls that get much slower further along): short calls reach their final size after
    one or two steps.
    """

    def __init__(self, target: float, max_growth: int = 256):
        self.target = target
        self.max_growth = max_growth
        self.size = 1
        self._seconds_per_call: float | None = None
        self._measured_size = 0
        self._lock = threading.Lock()

    def next_size(self) -> int:
        with self._lock:
            if self._seconds_per_call:
                ideal = max(1, int(self.target / self._seconds_per_call))
                self.size = min(ideal, self.size * self.max_growth)
            return self.size

    def completed(self, batch_size: int, seconds: float) -> None:
        per_call = max(seconds, 1e-6) / max(batch_size, 1)
        with self._lock:
            if batch_size > self._measured_size or self._seconds_per_call is None:
                self._seconds_per_call, self._measured_size = per_call, batch_size
            elif batch_size == self._measured_size:
                self._seconds_per_call = 0.5 * self._seconds_per_call + 0.5 * per_call

    def reset(self) -> None:
        with self._lock:
            self.size = 1
            self._seconds_per_call = None
            self._measured_size = 0


class DistmlBackend(ParallelBackendBase):
    """joblib backend running batches on a distml cluster (see the module's documentation).

    Options (``parallel_config(backend="distml", ...)``): ``client`` (default: as described
    above), ``scatter`` (objects to place on the workers up front), ``scatter_threshold``
    (bytes above which an argument is placed on the workers: 256 KiB),
    ``wait_for_workers_timeout`` (seconds to wait for a first worker: 10).
    """

    default_n_jobs = -1
    supports_retrieve_callback = True
    supports_sharedmem = False
    uses_threads = False
    #: Seconds a batch should take (as measured from dispatch to result, so latency and
    #: queueing included): long enough to hide the cost of a task (a millisecond or two), short
    #: enough to spread the work evenly. joblib's own automatic batching aims at the same.
    target_batch_seconds = 0.2
    #: Finished batches whose (small) results are let go together, in one message.
    held_results = 64

    def __init__(self, nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                 client: Any = None, scatter: list | tuple | None = None,
                 scatter_threshold: int = 256 * 1024, wait_for_workers_timeout: float = 10.0,
                 **backend_kwargs: Any):
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads,
                         **backend_kwargs)
        if scatter is not None and not isinstance(scatter, (list, tuple)):
            raise TypeError(f"scatter must be a list or tuple of objects to place on the "
                            f"workers, not {type(scatter).__name__}")
        if not isinstance(scatter_threshold, int) or scatter_threshold < 0:
            raise ValueError(f"scatter_threshold must be a non-negative number of bytes, not "
                             f"{scatter_threshold!r}")
        self.client = client
        #: The user chose this client: never replaced by another one behind their back.
        self._client_given = client is not None
        self.scatter = list(scatter or [])
        self.scatter_threshold = scatter_threshold
        self.wait_for_workers_timeout = wait_for_workers_timeout
        self._placer = ArgumentPlacer(scatter_threshold)
        self._sizer = _BatchSizer(self.target_batch_seconds)
        self._pending: dict[str, Any] = {}
        self._pending_lock = threading.Lock()
        #: futures of finished batches whose small results are released in groups
        self._held: list = []
        self._batch_functions: dict[int, tuple[Callable, SameFunctionBatch]] = {}
        self._nested: DistmlBackend | None = None
        self._completions: CallbackChannel | None = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Only the options travel (the nested backend inside batches): a backend unpickled on
        a worker finds its own client there."""
        return {"nesting_level": self.nesting_level, "scatter_threshold": self.scatter_threshold,
                "wait_for_workers_timeout": self.wait_for_workers_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def fresh_copy(self) -> "DistmlBackend":
        """A backend with the same options and no state: one per batch on a worker, since a
        backend follows one ``Parallel`` call at a time and batches run side by side."""
        return DistmlBackend(**self.__getstate__())

    # ------------------------------------------------------------------ joblib's protocol
    def _get_client(self) -> Any:
        if self.client is None or self.client.status not in ("running", "reconnecting"):
            if self._client_given:
                from distml.errors import DistmlError

                raise DistmlError(f"the client given to the joblib backend 'distml' is "
                                  f"{self.client.status}")
            self.client = _client_for_backend()
        return self.client

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """``n_jobs`` as joblib means it, counted in the cluster's threads: -1 is all of them,
        -2 all but one; a positive number is taken as asked."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if n_jobs > 0:
            return n_jobs
        return max(1, self._total_threads() + 1 + n_jobs)

    def _total_threads(self) -> int:
        """The cluster's threads (see :mod:`distml.parallel.threads`), waiting up to
        ``wait_for_workers_timeout`` for a first worker."""
        return total_threads(self._get_client(), self.wait_for_workers_timeout)

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: str | None = None,
                  require: str | None = None, **backend_kwargs: Any) -> int:
        self.parallel = parallel
        client = self._get_client()
        n = self.effective_n_jobs(n_jobs)
        if self.scatter:
            self._placer.place(client, self.scatter, self._local_workers())
        return n

    def start_call(self) -> None:
        self._sizer.reset()
        self._completions = CallbackChannel()

    def stop_call(self) -> None:
        if self._completions is not None:
            self._completions.close()
        self._completions = None
        self._release_held()

    def terminate(self) -> None:
        self._cancel_pending()
        self._release_held()
        self._placer.clear()
        self._batch_functions.clear()

    def compute_batch_size(self) -> int:
        return self._sizer.next_size()

    def batch_completed(self, batch_size: int, duration: float) -> None:
        self._sizer.completed(batch_size, duration)

    def get_nested_backend(self) -> tuple["DistmlBackend", None]:
        """Parallel calls inside batches run on the cluster too (through the worker's client)."""
        if self._nested is None:
            self._nested = DistmlBackend(nesting_level=(self.nesting_level or 0) + 1,
                                         scatter_threshold=self.scatter_threshold,
                                         wait_for_workers_timeout=self.wait_for_workers_timeout)
        return self._nested, None

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        """Inside a task, give the thread back while waiting for the batches: they may need
        it (a one-thread worker would otherwise wait for itself)."""
        from distml.worker.context import in_task, rejoin, secede

        if not in_task():
            yield
            return
        secede()
        try:
            yield
        finally:
            rejoin()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel every batch still on the cluster (running ones are interrupted)."""
        self._cancel_pending()
        if not ensure_ready:
            self._placer.clear()

    # ------------------------------------------------------------------ submitting
    def submit(self, func: Callable, callback: Callable | None = None) -> Any:
        client = self._get_client()
        function, arguments = self._as_task(client, func)
        future = client.submit(function, *arguments, pure=False)
        with self._pending_lock:
            self._pending[future.key] = future
        if callback is not None:
            completions = self._completions
            future.add_done_callback(
                lambda f: completions.put(callback, f) if completions is not None else None)
        return future

    def _as_task(self, client: Any, batch: Callable) -> tuple[Callable, tuple]:
        """The task's function and arguments for a joblib batch: the calls packed in one opaque
        argument, followed by the futures of the large values they use."""
        items = getattr(batch, "items", None)
        nested = getattr(batch, "_backend", None), getattr(batch, "_n_jobs", None)
        if not isinstance(items, list) or not items:
            return _call, (batch,)  # not joblib's BatchedCalls: run it as it is
        workers = self._local_workers()
        substitute = self._placer.substitute
        placed: list = []
        index: dict[str, int] = {}

        def mark(value: Any) -> Any:
            if type(value) in SCALAR_TYPES:
                return value
            found = substitute(client, value, workers)
            if found is value:
                return value
            position = index.get(found.key)
            if position is None:
                position = index[found.key] = len(placed)
                placed.append(found)
            return Placed(position)

        first = items[0][0]
        if (all(map(operator.is_, itertools.repeat(first), map(_FUNCTION, items)))
                and not any(map(_KWARGS, items))):
            arguments = list(map(_ARGS, items))
            if SCALAR_TYPES.issuperset(map(type, itertools.chain.from_iterable(arguments))):
                # the usual delayed(f)(scalars): checked and packed at C speed
                packed = PackedCalls(arguments, [], positional=True)
                return self._same_function(first, nested), (packed,)
        same = True
        only_scalars = SCALAR_TYPES.issuperset
        calls: list = []
        pairs: list = []
        with_placed: list[int] = []
        for n, (function, args, kwargs) in enumerate(items):
            if function is not first:
                same = False
            if not only_scalars(map(type, args)) or (
                    kwargs and not only_scalars(map(type, kwargs.values()))):
                args = tuple([mark(a) for a in args])
                kwargs = {k: mark(v) for k, v in kwargs.items()}
                if Placed in map(type, args) or Placed in map(type, kwargs.values()):
                    with_placed.append(n)
            calls.append((function, args, kwargs))
            pairs.append((args, kwargs))
        if same:
            packed = PackedCalls(pairs, with_placed)
            return self._same_function(first, nested), (packed, *placed)
        return MixedBatch(nested), (PackedCalls(calls, with_placed), *placed)

    def _same_function(self, function: Callable, nested: tuple) -> SameFunctionBatch:
        """One batch function per user function and nested backend, so that it is pickled once
        per call (the client's codec caches by identity)."""
        cached = self._batch_functions.get(id(function))
        if cached is not None and cached[0] is function and cached[1].nested == nested:
            return cached[1]
        batch_function = SameFunctionBatch(function, nested)
        self._batch_functions[id(function)] = (function, batch_function)
        return batch_function

    def _local_workers(self) -> list[str] | None:
        """Inside a task, data placed from it stays on its worker."""
        from distml.worker.context import get_worker, in_task

        return [get_worker().address] if in_task() else None

    # ------------------------------------------------------------------ results
    def retrieve_result_callback(self, future: Any) -> Any:
        with self._pending_lock:
            self._pending.pop(future.key, None)
        value = _result(future)
        if future._state.value is not None:  # noqa: SLF001 - came inline (see _result)
            self._hold(future)
        return value

    def _hold(self, future: Any) -> None:
        """Keep a finished batch's future a while before letting it go: releasing its result
        costs messages (client to scheduler to worker) and a wake-up of the client's event
        loop, once per batch; released in groups, they cost that once per group. Only results
        that came with their completion (small, see ``inline_result_bytes``) are held."""
        with self._pending_lock:
            self._held.append(future)
            if len(self._held) < self.held_results:
                return
            held, self._held = self._held, []
        del held  # released here, in one message

    def _release_held(self) -> None:
        with self._pending_lock:
            held, self._held = self._held, []
        del held

    def _cancel_pending(self) -> None:
        with self._pending_lock:
            futures, self._pending = list(self._pending.values()), {}
        if futures and self.client is not None and self.client.status == "running":
            self.client.cancel(futures)


_FUNCTION, _ARGS, _KWARGS = (operator.itemgetter(i) for i in range(3))


def _call(function: Callable) -> Any:
    return function()


def _result(future: Any) -> Any:
    """The future's value; a small one came with the completion message and is read here
    without a trip through the client's event loop."""
    from distml.client.future import FINISHED
    from distml.protocol import serialize

    state = future._state  # noqa: SLF001 - the same package's fast path for inline values
    if state.status == FINISHED and state.value is not None:
        return serialize.loads([state.value])
    return future.result()
