"""In-process connections: a client and the scheduler of a local cluster in the same process
talk through a pair of queues on their shared event loop instead of loopback TCP.

Messages keep their wire form: the header is packed and unpacked with msgpack and checked
against the same limits, and frames arrive as buffers of the receiver's own (``bytes`` are
shared, being immutable; anything mutable is copied), so each side sees what a socket would have
delivered. What is saved is the socket: the system calls, the stream buffers and a wake-up of
the event loop per message. On the search benchmark that is about 40 of a search's 110 messages.
There is no handshake: nothing outside this process can reach such a connection.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Sequence

from distml.config import Config
from distml.errors import CommClosedError, ProtocolError
from distml.protocol.wire import Limits, check_limits, decode_header, owned_frame, pack_header

__all__ = ["InProcessComm", "comm_pair"]

_CLOSED = object()
_ids = itertools.count()


class InProcessComm:
    """One end of an in-process connection, with :class:`distml.comm.Comm`'s interface."""

    def __init__(self, local_address: str, peer_address: str, config: Config) -> None:
        self.local_address = local_address
        self.peer_address = peer_address
        self._limits = Limits.from_config(config)
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._peer: InProcessComm | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, header: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        peer = self._peer
        if self._closed or peer is None or peer._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        packed = pack_header(header)
        peer._inbox.put_nowait((packed, [owned_frame(f) for f in frames]))

    async def recv(self) -> tuple[dict[str, Any], list[memoryview]]:
        """The next message; ``CommClosedError`` once either end closed and the messages sent
        before that were read. A message over the limits closes the connection and raises
        ``ProtocolError`` (after telling the peer why), as on a socket."""
        if self._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        item = await self._inbox.get()
        if item is _CLOSED:
            self._closed = True
            raise CommClosedError(f"connection closed by {self.peer_address}")
        packed, frames = item
        try:
            check_limits(len(packed), [len(f) for f in frames], self._limits)
            header = decode_header(packed)
        except ProtocolError as exc:
            try:
                await self.send({"op": "error", "message": str(exc)})
            except CommClosedError:
                pass
            await self.close()
            raise ProtocolError(f"from {self.peer_address}: {exc}") from None
        return header, [memoryview(f) for f in frames]

    async def close(self) -> None:
        """Close both ends: the peer reads what was sent before, then ``CommClosedError``."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_CLOSED)  # a recv waiting here ends
        if self._peer is not None and not self._peer._closed:
            self._peer._inbox.put_nowait(_CLOSED)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<InProcessComm {self.local_address} -> {self.peer_address}{state}>"


def comm_pair(server_address: str, config: Config) -> tuple[InProcessComm, InProcessComm]:
    """``(client end, server end)`` of a new connection to the server at ``server_address``."""
    client_address = f"inproc://{next(_ids)}"
    client = InProcessComm(client_address, server_address, config)
    server = InProcessComm(server_address, client_address, config)
    client._peer, server._peer = server, client
    return client, server
