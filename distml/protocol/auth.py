"""Mutual authentication over a shared secret, before anything else is read.

The server sends a random nonce; the client answers with its own nonce and an HMAC-SHA256 over
both; the server checks it and proves in turn that it knows the secret. Until then each side reads
only small msgpack headers (``PREAUTH_LIMITS``), so an unauthenticated peer never reaches pickle,
and a client never talks to an impostor that would send it pickles.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from typing import Any, Awaitable

from tornado.iostream import IOStream

from distml.errors import AuthenticationError, CommClosedError, ProtocolError, TimeoutError
from distml.protocol.wire import PREAUTH_LIMITS, read_message, write_message

VERSION = 1
NONCE_BYTES = 32
MAC_BYTES = hashlib.sha256().digest_size


def _mac(secret: bytes, label: bytes, first_nonce: bytes, second_nonce: bytes) -> bytes:
    return hmac.new(secret, label + b"|" + first_nonce + second_nonce, hashlib.sha256).digest()


def _check_fields(msg: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()
                  ) -> None:
    missing = required - msg.keys()
    unexpected = msg.keys() - required - optional - {"op"}
    if missing:
        raise ProtocolError(f"handshake message {msg['op']!r} lacks {sorted(missing)}")
    if unexpected:
        raise ProtocolError(f"handshake message {msg['op']!r} has unexpected fields "
                            f"{sorted(repr(k)[:50] for k in unexpected)}")


def _bytes_field(msg: dict[str, Any], name: str, size: int) -> bytes:
    value = msg[name]
    if not isinstance(value, bytes) or len(value) != size:
        raise ProtocolError(f"handshake message {msg['op']!r}: {name!r} must be {size} bytes")
    return value


def _check_version(version: Any, who: str) -> None:
    if version != VERSION:
        raise ProtocolError(f"{who} speaks distml protocol version {version!r}, this process "
                            f"speaks version {VERSION}; run the same distml version on both sides")


async def _expect(stream: IOStream, op: str) -> dict[str, Any]:
    msg, _ = await read_message(stream, PREAUTH_LIMITS)
    if msg["op"] == "error":
        raise AuthenticationError(f"peer refused the handshake: {str(msg.get('message'))[:200]!r}")
    if msg["op"] != op:
        raise ProtocolError(f"expected {op!r} during the handshake, got {msg['op'][:100]!r}")
    return msg


async def _with_timeout(handshake: Awaitable[None], timeout: float) -> None:
    try:
        await asyncio.wait_for(handshake, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"handshake did not finish within {timeout} s") from None


async def _server(stream: IOStream, secret: bytes) -> None:
    server_nonce = os.urandom(NONCE_BYTES)
    await write_message(stream, {"op": "hello", "version": VERSION, "nonce": server_nonce})
    try:
        msg = await _expect(stream, "auth")
        _check_version(msg.get("version", VERSION), "the client")
        _check_fields(msg, {"nonce", "mac"}, frozenset({"version"}))
        client_nonce = _bytes_field(msg, "nonce", NONCE_BYTES)
        expected = _mac(secret, b"distml-client", server_nonce, client_nonce)
        if not hmac.compare_digest(expected, _bytes_field(msg, "mac", MAC_BYTES)):
            raise AuthenticationError("the client does not know the shared secret")
    except (AuthenticationError, ProtocolError) as exc:
        reason = "authentication failed" if isinstance(exc, AuthenticationError) else str(exc)
        try:  # tell an honest but misconfigured client why; a hostile one may be gone already
            await write_message(stream, {"op": "error", "message": reason})
        except CommClosedError:
            pass
        raise
    await write_message(stream, {"op": "welcome",
                                 "mac": _mac(secret, b"distml-server", client_nonce,
                                             server_nonce)})


async def _client(stream: IOStream, secret: bytes) -> None:
    hello = await _expect(stream, "hello")
    _check_version(hello.get("version"), "the server")
    _check_fields(hello, {"version", "nonce"})
    server_nonce = _bytes_field(hello, "nonce", NONCE_BYTES)
    client_nonce = os.urandom(NONCE_BYTES)
    await write_message(stream, {"op": "auth", "version": VERSION, "nonce": client_nonce,
                                 "mac": _mac(secret, b"distml-client", server_nonce,
                                             client_nonce)})
    welcome = await _expect(stream, "welcome")
    _check_fields(welcome, {"mac"})
    expected = _mac(secret, b"distml-server", client_nonce, server_nonce)
    if not hmac.compare_digest(expected, _bytes_field(welcome, "mac", MAC_BYTES)):
        raise AuthenticationError("the server does not know the shared secret")


async def server_handshake(stream: IOStream, secret: bytes, timeout: float) -> None:
    """Authenticate a peer that connected to us. Raises ``AuthenticationError`` (wrong secret),
    ``ProtocolError`` (not a distml peer, or another version), ``TimeoutError`` or
    ``CommClosedError``; the caller closes the stream."""
    await _with_timeout(_server(stream, secret), timeout)


async def client_handshake(stream: IOStream, secret: bytes, timeout: float) -> None:
    """Authenticate to a server and check that it knows the secret too; raises as
    :func:`server_handshake` does."""
    await _with_timeout(_client(stream, secret), timeout)
