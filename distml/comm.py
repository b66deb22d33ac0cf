"""Authenticated connections over TCP (or TLS): addresses, ``Comm``, ``connect``, ``Listener``.

Every connection runs the shared-secret handshake (:mod:`distml.protocol.auth`) before a handler
sees it; unauthenticated peers are logged and dropped without affecting anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Awaitable, Callable, Sequence

from tornado.iostream import IOStream, StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpclient import TCPClient
from tornado.tcpserver import TCPServer

from distml.config import Config
from distml.errors import AuthenticationError, CommClosedError, ProtocolError, TimeoutError
from distml.protocol.auth import client_handshake, server_handshake
from distml.protocol.wire import Limits, read_message, write_message

logger = logging.getLogger(__name__)

SCHEMES = ("tcp", "tls")


def parse_address(address: str) -> tuple[str, str, int]:
    """``"tcp://host:port"`` -> ``("tcp", "host", port)``; IPv6 hosts in brackets."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"address {address!r} is not of the form tcp://host:port")
    scheme, rest = address.split("://", 1)
    if scheme not in SCHEMES:
        raise ValueError(f"address {address!r}: scheme must be one of {SCHEMES}")
    if rest.startswith("["):
        host, _, port_text = rest[1:].partition("]:")
    else:
        host, _, port_text = rest.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {address!r} has no valid port") from None
    if not host or not 0 <= port < 65536:
        raise ValueError(f"address {address!r} needs a host and a port in 0-65535")
    return scheme, host, port


def format_address(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _limits(config: Config) -> Limits:
    return Limits(config.max_header_bytes, config.max_frame_bytes, config.max_frames)


class Comm:
    """One authenticated connection: send and receive messages (header dict + frames)."""

    def __init__(self, stream: IOStream, peer_address: str, local_address: str, config: Config):
        self.stream = stream
        self.peer_address = peer_address
        self.local_address = local_address
        self._limits = _limits(config)
        sock = stream.socket
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def closed(self) -> bool:
        return self.stream.closed()

    async def send(self, header: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        if self.stream.closed():
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        await write_message(self.stream, header, frames)

    async def recv(self) -> tuple[dict[str, Any], list]:
        try:
            return await read_message(self.stream, self._limits)
        except ProtocolError:
            self.stream.close()
            raise

    async def close(self) -> None:
        self.stream.close()

    def __repr__(self) -> str:
        return f"<Comm {self.local_address} -> {self.peer_address}>"


async def connect(address: str, config: Config, timeout: float | None = None) -> Comm:
    """Connect and authenticate; retry refused connections until ``timeout``."""
    scheme, host, port = parse_address(address)
    timeout = config.connect_timeout if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ssl_options = config.ssl_client if scheme == "tls" else None
    if scheme == "tls" and ssl_options is None:
        raise ValueError(f"{address}: tls:// needs Config.ssl_client")
    delay = 0.01
    last_error: Exception | None = None
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"could not connect to {address} within {timeout} s: {last_error}")
        stream = None
        try:
            stream = await asyncio.wait_for(
                TCPClient().connect(host, port, ssl_options=ssl_options,
                                    max_buffer_size=config.max_frame_bytes + 2**20), left)
            await client_handshake(stream, config.secret_bytes(), max(0.1, deadline - loop.time()))
        except (AuthenticationError, ProtocolError):
            if stream is not None:
                stream.close()
            raise
        except (OSError, StreamClosedError, CommClosedError, asyncio.TimeoutError) as exc:
            if stream is not None:
                stream.close()
            last_error = exc
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, 0.5)
            continue
        local = stream.socket.getsockname()
        return Comm(stream, address, format_address(scheme, local[0], local[1]), config)


class _Server(TCPServer):
    def __init__(self, on_stream: Callable[[IOStream, Any], Awaitable[None]], **kwargs: Any):
        super().__init__(**kwargs)
        self._on_stream = on_stream

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        await self._on_stream(stream, address)


class Listener:
    """Accepts connections, authenticates them, and hands each ``Comm`` to ``handler``."""

    def __init__(self, address: str, handler: Callable[[Comm], Awaitable[None]], config: Config):
        self.scheme, self.host, self.port = parse_address(address)
        if self.scheme == "tls" and config.ssl_server is None:
            raise ValueError(f"{address}: tls:// needs Config.ssl_server")
        self.handler = handler
        self.config = config
        self._server: _Server | None = None
        self._bound_port = self.port

    @property
    def address(self) -> str:
        return format_address(self.scheme, self.host, self._bound_port)

    async def start(self) -> None:
        ssl_options = self.config.ssl_server if self.scheme == "tls" else None
        self._server = _Server(self._on_stream, ssl_options=ssl_options,
                               max_buffer_size=self.config.max_frame_bytes + 2**20)
        sockets = bind_sockets(self.port, address=self.host)
        self._server.add_sockets(sockets)
        self._bound_port = sockets[0].getsockname()[1]

    async def _on_stream(self, stream: IOStream, address: Any) -> None:
        peer = format_address(self.scheme, str(address[0]), int(address[1])) if isinstance(
            address, tuple) else str(address)
        try:
            await server_handshake(stream, self.config.secret_bytes(),
                                   self.config.connect_timeout)
        except (AuthenticationError, ProtocolError, CommClosedError, StreamClosedError,
                OSError) as exc:
            logger.warning("refused connection from %s: %s", peer, exc)
            stream.close()
            return
        comm = Comm(stream, peer, self.address, self.config)
        try:
            await self.handler(comm)
        except Exception:  # noqa: BLE001 - one connection's failure never stops the listener
            logger.exception("handler for %s failed", peer)
            await comm.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
