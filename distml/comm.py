"""Authenticated connections over TCP (or TLS): addresses, ``Comm``, ``connect``, ``Listener``.

Every connection runs the shared-secret handshake (:mod:`distml.protocol.auth`) before a handler
sees it; unauthenticated peers are logged and dropped without affecting anyone else. Nothing here
unpickles: messages are msgpack headers plus opaque frames.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
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
_FIRST_RETRY_DELAY = 0.01
_MAX_RETRY_DELAY = 0.5


def parse_address(address: str) -> tuple[str, str, int]:
    """``"tcp://host:port"`` -> ``("tcp", "host", port)``; IPv6 hosts go in brackets
    (``"tcp://[::1]:8786"``)."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"address {address!r} is not of the form tcp://host:port")
    scheme, rest = address.split("://", 1)
    if scheme not in SCHEMES:
        raise ValueError(f"address {address!r}: the scheme must be one of {', '.join(SCHEMES)}")
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]:")
        if not bracket:
            raise ValueError(f"address {address!r}: expected [ipv6-host]:port")
    else:
        host, _, port_text = rest.rpartition(":")
        if ":" in host:
            raise ValueError(f"address {address!r}: put an IPv6 host in brackets, "
                             f"e.g. {scheme}://[::1]:8786")
    if not host or "/" in host:
        raise ValueError(f"address {address!r} has no valid host")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {address!r} needs a port in 0-65535")
    return scheme, host, int(port_text)


def format_address(scheme: str, host: str, port: int) -> str:
    """Inverse of :func:`parse_address`."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _set_nodelay(stream: IOStream) -> None:
    """Small control messages must leave at once, not wait for Nagle's algorithm."""
    sock = stream.socket
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Comm:
    """One authenticated connection: send and receive messages (header dict + frames).

    Only :func:`connect` and :class:`Listener` build these, after the handshake succeeded.
    """

    def __init__(self, stream: IOStream, peer_address: str, local_address: str, config: Config):
        self._stream = stream
        self.peer_address = peer_address
        self.local_address = local_address
        self._limits = Limits.from_config(config)

    @property
    def closed(self) -> bool:
        return self._stream.closed()

    async def send(self, header: dict[str, Any], frames: Sequence[Any] = ()) -> None:
        """Send one message; safe to call from several coroutines at once."""
        if self._stream.closed():
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        await write_message(self._stream, header, frames)

    async def recv(self) -> tuple[dict[str, Any], list[memoryview]]:
        """Receive one message; frames are writable memoryviews. A malformed or oversized
        message closes the connection (the stream is out of sync) and raises ``ProtocolError``,
        after telling the peer why in an ``error`` message (best effort, for a second at most),
        so that it does not send the same message again."""
        try:
            return await read_message(self._stream, self._limits)
        except ProtocolError as exc:
            try:
                await asyncio.wait_for(write_message(self._stream, {
                    "op": "error", "message": str(exc)}), 1.0)
            except (CommClosedError, asyncio.TimeoutError):
                pass
            finally:
                self._stream.close()
            raise ProtocolError(f"from {self.peer_address}: {exc}") from None

    async def close(self) -> None:
        self._stream.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Comm {self.local_address} -> {self.peer_address}{state}>"


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc``, if any: those never fix themselves, so no retry."""
    cause = exc.real_error if isinstance(exc, StreamClosedError) else exc
    return cause if isinstance(cause, ssl.SSLError) else None


async def _connect_once(address: str, config: Config, timeout: float) -> Comm:
    """One attempt: TCP (or TLS) connection, then the handshake, within ``timeout``."""
    scheme, host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stream = await TCPClient().connect(
        host, port, ssl_options=config.ssl_client if scheme == "tls" else None,
        max_buffer_size=Limits.from_config(config).stream_buffer_bytes, timeout=timeout)
    try:
        _set_nodelay(stream)
        await client_handshake(stream, config.secret_bytes(), max(0.1, deadline - loop.time()))
        local = stream.socket.getsockname()
    except BaseException:
        stream.close()
        raise
    return Comm(stream, address, format_address(scheme, local[0], local[1]), config)


async def connect(address: str, config: Config, timeout: float | None = None,
                  retry: bool = True) -> Comm:
    """Connect to ``address`` and authenticate (both ways) with ``config``'s secret.

    Refused or dropped connections are retried with backoff until ``timeout`` (default
    ``config.connect_timeout``), since a worker may start before its scheduler; then distml's
    ``TimeoutError`` naming the address. ``retry=False`` gives up at the first failure (a peer
    that is gone should not cost the whole timeout). A wrong secret, a non-distml peer or a TLS
    failure raise at once (``AuthenticationError`` or ``ProtocolError``).
    """
    scheme, _, _ = parse_address(address)
    config.secret_bytes()  # fail now, not after retrying, if there is no secret
    if scheme == "tls" and config.ssl_client is None:
        raise ValueError(f"{address}: tls:// needs Config.ssl_client")
    timeout = config.connect_timeout if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _FIRST_RETRY_DELAY
    while True:
        try:
            return await _connect_once(address, config, max(0.01, deadline - loop.time()))
        except (AuthenticationError, ProtocolError) as exc:
            raise type(exc)(f"{address}: {exc}") from None
        except (OSError, CommClosedError, asyncio.TimeoutError) as exc:  # includes timeouts
            tls_error = _tls_failure(exc)
            if tls_error is not None:
                raise AuthenticationError(f"{address}: TLS handshake failed: {tls_error}") from None
            last_error = exc
        left = deadline - loop.time() if retry else 0.0
        if left <= 0:
            raise TimeoutError(f"could not connect to {address} within {timeout} s "
                               f"(last error: {type(last_error).__name__}: {last_error})")
        logger.debug("connecting to %s failed (%s); retrying", address, last_error)
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_RETRY_DELAY)


class _Server(TCPServer):
    """Passes every accepted stream to a callback."""

    def __init__(self, on_stream: Callable[[IOStream, Any], Awaitable[None]], **kwargs: Any):
        super().__init__(**kwargs)
        self._on_stream = on_stream

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        await self._on_stream(stream, address)


class Listener:
    """Accepts connections on ``address``, authenticates them, and runs ``handler`` with each
    authenticated ``Comm``. Use port 0 to get a free port; :attr:`address` tells which."""

    def __init__(self, address: str, handler: Callable[[Comm], Awaitable[None]], config: Config):
        self.scheme, self.host, self.port = parse_address(address)
        if self.scheme == "tls" and config.ssl_server is None:
            raise ValueError(f"{address}: tls:// needs Config.ssl_server")
        self.handler = handler
        self.config = config
        self._server: _Server | None = None
        self._handshaking: set[IOStream] = set()

    @property
    def address(self) -> str:
        """The address peers can connect to (with the real port once started)."""
        return format_address(self.scheme, self.host, self.port)

    async def start(self) -> None:
        """Bind and start accepting; fails at once if there is no secret to check peers with."""
        self.config.secret_bytes()
        sockets = bind_sockets(self.port, address=self.host)
        self.port = sockets[0].getsockname()[1]
        self._server = _Server(self._on_stream,
                               ssl_options=self.config.ssl_server if self.scheme == "tls" else None,
                               max_buffer_size=Limits.from_config(self.config).stream_buffer_bytes)
        self._server.add_sockets(sockets)
        logger.debug("listening on %s", self.address)

    def stop(self) -> None:
        """Stop accepting and drop connections still in their handshake. Authenticated
        connections belong to their handlers, which close them."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for stream in self._handshaking:
            stream.close()
        self._handshaking.clear()

    async def _on_stream(self, stream: IOStream, address: Any) -> None:
        peer = (format_address(self.scheme, str(address[0]), int(address[1]))
                if isinstance(address, tuple) else str(address))
        self._handshaking.add(stream)
        try:
            _set_nodelay(stream)
            await server_handshake(stream, self.config.secret_bytes(), self.config.connect_timeout)
        except Exception as exc:  # noqa: BLE001 - whatever a peer does, only it is dropped
            if self._server is not None:
                logger.warning("refused connection from %s: %s: %s", peer, type(exc).__name__,
                               exc)
            stream.close()
            return
        finally:
            self._handshaking.discard(stream)
        if self._server is None or stream.closed():  # stopped while the peer authenticated
            stream.close()
            return
        comm = Comm(stream, peer, self.address, self.config)
        try:
            await self.handler(comm)
        except Exception:  # noqa: BLE001 - one connection's failure never stops the listener
            logger.exception("handler for connection from %s failed", peer)
            await comm.close()
