"""Pickling of user objects with out-of-band buffers.

``dumps`` returns a list of frames: the pickle stream, then every large buffer (numpy arrays and
other ``PickleBuffer``-aware objects) as it is in memory, uncopied. ``loads`` rebuilds the object on
the received frames, so an array that arrives in a writable buffer is used in place.

Only workers and clients call ``loads``, and only on frames from authenticated peers.
"""

from __future__ import annotations

import pickle
from typing import Any, Sequence

import cloudpickle

from distml.errors import SerializationError

Frame = bytes | bytearray | memoryview


def dumps(obj: Any) -> list[Frame]:
    """Pickle ``obj`` (protocol 5); functions from ``__main__`` or lambdas go by value."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        if b"__main__" in stream:
            raise pickle.PicklingError("refers to __main__")
    except Exception:  # noqa: BLE001 - retry by value; report the by-value error if that fails
        buffers = []
        try:
            stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(f"cannot pickle {type(obj).__name__} object: "
                                     f"{type(exc).__name__}: {exc}") from exc
    return [stream, *(_raw(b) for b in buffers)]


def _raw(buffer: pickle.PickleBuffer) -> memoryview:
    try:
        return buffer.raw()
    except BufferError:  # not contiguous: one copy is unavoidable
        return memoryview(bytes(buffer))


def loads(frames: Sequence[Frame]) -> Any:
    """Rebuild an object from ``dumps``'s frames."""
    if not frames:
        raise SerializationError("no frames to unpickle")
    return pickle.loads(frames[0], buffers=frames[1:])


def nbytes(frames: Sequence[Frame]) -> int:
    return sum(memoryview(f).nbytes for f in frames)
