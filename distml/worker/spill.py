"""A worker's results: in memory while they fit, on local disk when they do not.

``SpillBuffer`` is a mapping from key to value. Values live in memory (``fast``) in least recently
used order; when their total estimated size passes ``target`` bytes, or when the memory monitor
asks (the process's resident memory is high), the oldest go to disk (``slow``). Reading a spilled
key loads it back. Values are written as their pickle-5 frames, so numpy buffers go to the file
as they are, with no pickled copy, and come back read straight into 64-byte aligned slots.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any

from distml.protocol import serialize
from distml.protocol.buffers import aligned_parts
from distml.sizeof import sizeof
from distml.worker.allocator import release_free_memory

logger = logging.getLogger(__name__)


class SpillBuffer(MutableMapping):
    def __init__(self, target: int, directory: str | None = None):
        #: Bytes of in-memory values above which the least recently used are spilled (0: never).
        self.target = target
        self._own_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="distml-spill-")
        os.makedirs(self.directory, exist_ok=True)
        self.fast: OrderedDict[str, Any] = OrderedDict()
        self.sizes: dict[str, int] = {}
        #: key -> (file path, frame lengths) for values on disk.
        self.slow: dict[str, tuple[str, list[int]]] = {}
        self.fast_bytes = 0
        self.spilled_bytes = 0
        self.spill_count = 0
        self.unspill_count = 0

    # ------------------------------------------------------------------ mapping
    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def put(self, key: str, value: Any, nbytes: int | None = None) -> int:
        """Store ``value`` (``nbytes`` if already measured, else measured here); its size."""
        if key in self:
            del self[key]
        size = sizeof(value) if nbytes is None else nbytes
        self.fast[key] = value
        self.sizes[key] = size
        self.fast_bytes += size
        if self.target and self.fast_bytes > self.target:
            self.evict_until(self.target, keep=key)
        return size

    def __getitem__(self, key: str) -> Any:
        if key in self.fast:
            self.fast.move_to_end(key)
            return self.fast[key]
        if key not in self.slow:
            raise KeyError(key)
        value = self._load(key)
        self.fast[key] = value
        self.fast_bytes += self.sizes[key]
        if self.target and self.fast_bytes > self.target:
            self.evict_until(self.target, keep=key)
        return value

    def __delitem__(self, key: str) -> None:
        if key in self.fast:
            del self.fast[key]
            self.fast_bytes -= self.sizes.pop(key)
        elif key in self.slow:
            path, _ = self.slow.pop(key)
            self.spilled_bytes -= self.sizes.pop(key)
            _remove(path)
        else:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.fast or key in self.slow

    def __iter__(self) -> Iterator[str]:
        yield from list(self.fast)
        yield from list(self.slow)

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow)

    # ------------------------------------------------------------------ spilling
    def evict_until(self, limit: int, keep: str | None = None) -> int:
        """Spill least recently used values until in-memory values take at most ``limit``
        bytes (``keep`` stays). Returns the number of bytes spilled."""
        spilled = 0
        for key in list(self.fast):
            if self.fast_bytes <= limit:
                break
            if key == keep:
                continue
            spilled += self.evict(key)
        if spilled:
            release_free_memory()  # what the spilled values left free in the heap
        return spilled

    def evict(self, key: str) -> int:
        """Write one value to disk and drop it from memory; 0 if it cannot be pickled."""
        value = self.fast[key]
        try:
            frames = serialize.dumps(value)
        except Exception as exc:  # noqa: BLE001 - such a value stays in memory
            logger.warning("cannot spill %r (%s); keeping it in memory", key, exc)
            self.fast.move_to_end(key)
            return 0
        path = os.path.join(self.directory, hashlib.sha1(key.encode()).hexdigest())
        with open(path, "wb") as handle:
            for frame in frames:
                handle.write(frame)
        size = self.sizes[key]
        self.slow[key] = (path, [memoryview(f).nbytes for f in frames])
        del self.fast[key]
        self.fast_bytes -= size
        self.spilled_bytes += size
        self.spill_count += 1
        return size

    def _load(self, key: str) -> Any:
        path, lengths = self.slow[key]
        frames = aligned_parts(lengths)  # arrays come back aligned, so they get BLAS
        with open(path, "rb") as handle:
            for frame in frames:
                if frame.nbytes and handle.readinto(frame) != frame.nbytes:
                    raise OSError(f"spill file {path} of key {key!r} is truncated")
        del self.slow[key]
        _remove(path)
        self.spilled_bytes -= self.sizes[key]
        self.unspill_count += 1
        return serialize.loads(frames)

    def close(self) -> None:
        """Drop everything, removing the files this buffer wrote (and its folder if it made
        it)."""
        for path, _ in self.slow.values():
            _remove(path)
        self.fast.clear()
        self.slow.clear()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
