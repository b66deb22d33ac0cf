"""Reusable connections to peers, for request/response exchanges (fetching data, running
functions). One request is in flight per connection; idle connections are kept for reuse."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from distml.comm import Comm, connect
from distml.config import Config


class ConnectionPool:
    def __init__(self, config: Config, max_idle_per_peer: int = 4):
        self.config = config
        self.max_idle_per_peer = max_idle_per_peer
        self._idle: dict[str, list[Comm]] = defaultdict(list)
        self._closed = False

    @asynccontextmanager
    async def connection(self, address: str) -> AsyncIterator[Comm]:
        """A connection to ``address`` for one exchange; returned to the pool if still open."""
        idle = self._idle[address]
        comm = None
        while idle and comm is None:
            candidate = idle.pop()
            if not candidate.closed:
                comm = candidate
        if comm is None:  # peers are up already: a refused connection means gone, not yet
            comm = await connect(address, self.config, retry=False)
        ok = False
        try:
            yield comm
            ok = True
        finally:
            if ok and not comm.closed and not self._closed and len(idle) < self.max_idle_per_peer:
                idle.append(comm)
            else:
                await comm.close()

    async def request(self, address: str, header: dict[str, Any], frames=()) -> tuple[dict, list]:
        async with self.connection(address) as comm:
            await comm.send(header, frames)
            return await comm.recv()

    def forget(self, address: str) -> None:
        for comm in self._idle.pop(address, []):
            asyncio.ensure_future(comm.close())

    async def close(self) -> None:
        self._closed = True
        comms = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        await asyncio.gather(*(c.close() for c in comms), return_exceptions=True)
