"""Pickling of user objects with out-of-band buffers.

``dumps`` returns a list of frames: the pickle stream, then every large buffer (numpy arrays and
other ``PickleBuffer``-aware objects) as it is in memory, uncopied. ``loads`` rebuilds the object on
the received frames, so an array that arrives in a writable buffer is used in place.

Only workers and clients call ``loads``, and only on frames from authenticated peers.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Sequence

import cloudpickle

from distml.errors import SerializationError
from distml.protocol.buffers import writable

Frame = bytes | bytearray | memoryview


def dumps(obj: Any, out_of_band: bool = True) -> list[Frame]:
    """Pickle ``obj`` (protocol 5) into ``[pickle stream, *out-of-band buffers]``.

    ``out_of_band=False`` keeps buffers inside the stream (one frame): a copy, worth it only for
    small objects that travel inside another message.

    The standard pickler is tried first (fast); lambdas, local functions and anything from
    ``__main__`` go by value through cloudpickle, since the receiver cannot import them.
    Raises ``SerializationError`` naming the object's type if neither can pickle it.
    """
    buffers: list[pickle.PickleBuffer] = []
    callback = buffers.append if out_of_band else None
    try:
        stream = pickle.dumps(obj, protocol=5, buffer_callback=callback)
        if b"__main__" in stream:
            raise pickle.PicklingError("refers to __main__")
    except Exception:  # noqa: BLE001 - retry by value; report the by-value error if that fails
        buffers.clear()  # the same list: ``callback`` appends to it
        try:
            stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=callback)
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(f"cannot pickle {type(obj).__name__} object: "
                                     f"{type(exc).__name__}: {exc}") from exc
    return [stream, *(_raw(b) for b in buffers)]


def _raw(buffer: pickle.PickleBuffer) -> memoryview:
    """The buffer's bytes as they are in memory (no copy)."""
    try:
        return buffer.raw()
    except BufferError:  # not contiguous: one copy is unavoidable
        return memoryview(bytes(buffer))


def loads(frames: Sequence[Frame]) -> Any:
    """Rebuild an object from ``dumps``'s frames; arrays use writable frames in place.

    Unpickling runs arbitrary code: call this only on frames from an authenticated peer.
    """
    if not frames:
        raise SerializationError("no frames to unpickle")
    with _loads_lock:
        return pickle.loads(frames[0], buffers=frames[1:])


#: One unpickling at a time per process. Unpickling imports the modules objects come from; a
#: task thread and the event loop importing numpy at once in a freshly started worker failed
#: with "partially initialized module" (seen in the chaos experiment). Unpickling itself is
#: short (buffers are not copied), so the lock costs little.
_loads_lock = threading.RLock()


def nbytes(frames: Sequence[Frame]) -> int:
    """Total size of ``frames`` in bytes."""
    return sum(memoryview(f).nbytes for f in frames)


class TaskCodec:
    """Tasks as ``[function frame, arguments frame, *buffers]``.

    A ``map`` over 10,000 items sends one function 10,000 times; pickling it once per call (by
    value for ``__main__`` functions and lambdas, which is slow) and unpickling it once per worker
    keeps the per-task cost to the arguments. The cache is keyed by the function object on the
    sending side and by its bytes on the receiving side.
    """

    def __init__(self, max_cached: int = 512):
        self.max_cached = max_cached
        self._by_function: dict[int, tuple[Any, bytes]] = {}
        self._by_bytes: dict[bytes, Any] = {}

    def dump_function(self, func: Any) -> bytes:
        cached = self._by_function.get(id(func))
        if cached is not None and cached[0] is func:
            return cached[1]
        frames = dumps(func)
        # a function holding buffers (an array in a closure) is rare: keep it in one frame
        blob = bytes(frames[0]) if len(frames) == 1 else pickle.dumps(
            [bytes(f) for f in frames], protocol=5)
        if len(self._by_function) >= self.max_cached:
            self._by_function.clear()
        self._by_function[id(func)] = (func, blob)
        return blob

    def load_function(self, blob: bytes) -> Any:
        func = self._by_bytes.get(blob)
        if func is None:
            with _loads_lock:
                obj = pickle.loads(blob)
            func = loads(obj) if isinstance(obj, list) else obj
            if len(self._by_bytes) >= self.max_cached:
                self._by_bytes.clear()
            self._by_bytes[blob] = func
        return func

    def dumps(self, func: Any, args: tuple, kwargs: dict | None) -> list[Frame]:
        return [self.dump_function(func), *dumps((args, kwargs))]

    def loads(self, frames: Sequence[Frame]) -> tuple[Any, tuple, dict | None]:
        if len(frames) < 2:
            raise SerializationError("a task needs a function frame and an arguments frame")
        args, kwargs = loads([frames[1], *writable(frames[2:])])
        return self.load_function(bytes(frames[0])), args, kwargs
