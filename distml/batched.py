"""A message stream that sends at once when idle and batches when busy.

Small control messages (a task to run, a result's size) dominate the runtime's traffic. Sending
each alone costs a syscall and a wake-up on the other side; waiting to batch them costs latency.
``BatchedStream`` does both: the first message after a quiet period goes out immediately, and
messages that arrive while a send is in flight (or within ``interval`` of the last one) are
gathered into one ``{"op": "batch", "msgs": [...]}`` message. A message may carry frames; in a
batch, the frames of all its messages follow one another and ``"nframes"`` says how many belong
to each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable, Sequence

from distml.comm import Comm
from distml.errors import CommClosedError

logger = logging.getLogger(__name__)


class BatchedStream:
    """Send messages (headers with optional frames) over ``comm``; see the module docstring."""

    def __init__(self, comm: Comm, interval: float):
        self.comm = comm
        self.interval = interval
        self._buffer: list[dict[str, Any]] = []
        #: Frames of the buffered messages, by position in ``_buffer`` (most have none).
        self._frames: dict[int, Sequence[Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.messages_sent = 0
        self.batches_sent = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, msg: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        if self._closed:
            return
        if frames:
            self._frames[len(self._buffer)] = frames
        self._buffer.append(msg)
        self._wake.set()

    def send_many(self, msgs: Iterable[dict[str, Any]]) -> None:
        if self._closed:
            return
        self._buffer.extend(msgs)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                if not self._buffer:
                    continue
                msgs, frames = self._take()
                started = loop.time()
                await self.comm.send(*self._message(msgs, frames))
                self.messages_sent += len(msgs)
                self.batches_sent += 1
                # Busy: let more messages gather before the next send.
                remaining = self.interval - (loop.time() - started)
                if self._buffer and remaining > 0:
                    await asyncio.sleep(remaining)
        except CommClosedError:
            logger.debug("batched stream to %s closed", self.comm.peer_address)
        finally:
            self._closed = True

    def _take(self) -> tuple[list[dict[str, Any]], dict[int, Sequence[Any]]]:
        msgs, frames = self._buffer, self._frames
        self._buffer, self._frames = [], {}
        return msgs, frames

    @staticmethod
    def _message(msgs: list[dict[str, Any]], frames: dict[int, Sequence[Any]]
                 ) -> tuple[dict[str, Any], list[Any]]:
        """One message (header, frames) carrying ``msgs``."""
        if len(msgs) == 1:
            return msgs[0], list(frames.get(0, ()))
        batch: dict[str, Any] = {"op": "batch", "msgs": msgs}
        if not frames:
            return batch, []
        batch["nframes"] = [len(frames.get(i, ())) for i in range(len(msgs))]
        return batch, [f for i in sorted(frames) for f in frames[i]]

    async def close(self) -> None:
        """Send what is buffered, then stop."""
        if self._buffer and not self._closed and not self.comm.closed:
            try:
                await self.comm.send(*self._message(*self._take()))
            except CommClosedError:
                pass
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def unbatch(header: dict[str, Any], frames: Sequence[Any] = ()
            ) -> list[tuple[dict[str, Any], Sequence[Any]]]:
    """The messages inside ``header``, each with its frames (``header`` itself, unless it is a
    batch)."""
    if header.get("op") != "batch":
        return [(header, frames)]
    msgs = header.get("msgs")
    if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
        raise ValueError("batch message without a list of messages")
    counts = header.get("nframes")
    if counts is None:
        if frames:
            raise ValueError(f"batch message with {len(frames)} frames but no 'nframes'")
        return [(m, ()) for m in msgs]
    if not isinstance(counts, list) or len(counts) != len(msgs) or not all(
            type(n) is int and n >= 0 for n in counts) or sum(counts) != len(frames):
        raise ValueError("batch message whose 'nframes' does not match its messages and frames")
    out, start = [], 0
    for msg, count in zip(msgs, counts):
        out.append((msg, frames[start:start + count]))
        start += count
    return out
