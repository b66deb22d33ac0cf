"""A message stream that sends at once when idle and batches when busy.

Small control messages (a task to run, a result's size) dominate the runtime's traffic. Sending
each alone costs a syscall and a wake-up on the other side; waiting to batch them costs latency.
``BatchedStream`` does both: the first message after a quiet period goes out immediately, and
messages that arrive while a send is in flight (or within ``interval`` of the last one) are
gathered into one ``{"op": "batch", "msgs": [...]}`` message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from distml.comm import Comm
from distml.errors import CommClosedError

logger = logging.getLogger(__name__)


class BatchedStream:
    """Send header-only messages over ``comm``; see the module docstring."""

    def __init__(self, comm: Comm, interval: float):
        self.comm = comm
        self.interval = interval
        self._buffer: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.messages_sent = 0
        self.batches_sent = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, msg: dict[str, Any]) -> None:
        if self._closed:
            return
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
                msgs, self._buffer = self._buffer, []
                started = loop.time()
                if len(msgs) == 1:
                    await self.comm.send(msgs[0])
                else:
                    await self.comm.send({"op": "batch", "msgs": msgs})
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

    async def close(self) -> None:
        """Send what is buffered, then stop."""
        if self._buffer and not self._closed and not self.comm.closed:
            msgs, self._buffer = self._buffer, []
            try:
                await self.comm.send({"op": "batch", "msgs": msgs})
            except CommClosedError:
                pass
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def unbatch(header: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages inside ``header`` (itself, unless it is a batch)."""
    if header.get("op") == "batch":
        msgs = header.get("msgs")
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise ValueError("batch message without a list of messages")
        return msgs
    return [header]
