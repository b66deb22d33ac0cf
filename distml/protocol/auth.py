"""Mutual authentication over a shared secret, before anything else is read.

The server sends a random nonce; the client answers with its own nonce and an HMAC over both;
the server checks it and proves in turn that it knows the secret. Until then each side reads only
small msgpack headers (``PREAUTH_LIMITS``), so an unauthenticated peer never reaches pickle, and a
client never talks to an impostor that would send it pickles.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

from tornado.iostream import IOStream

from distml.errors import AuthenticationError, ProtocolError
from distml.protocol.wire import PREAUTH_LIMITS, read_message, write_message

VERSION = 1
NONCE_BYTES = 32


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, label + b"|" + b"".join(parts), hashlib.sha256).digest()


def _nonce_field(msg: dict, name: str) -> bytes:
    value = msg.get(name)
    if not isinstance(value, bytes) or len(value) != NONCE_BYTES:  # nonces and SHA-256 MACs
        raise AuthenticationError(f"handshake message without a valid {name!r}")
    return value


async def _expect(stream: IOStream, op: str, timeout: float) -> dict:
    try:
        msg, _ = await asyncio.wait_for(read_message(stream, PREAUTH_LIMITS), timeout)
    except asyncio.TimeoutError:
        raise AuthenticationError(f"no {op!r} message within {timeout} s") from None
    if msg["op"] == "error":
        raise AuthenticationError(f"peer refused: {msg.get('message')}")
    if msg["op"] != op:
        raise ProtocolError(f"expected {op!r} during the handshake, got {msg['op']!r}")
    return msg


async def server_handshake(stream: IOStream, secret: bytes, timeout: float) -> None:
    """Authenticate a connecting peer; raise ``AuthenticationError`` if it fails."""
    server_nonce = os.urandom(NONCE_BYTES)
    await write_message(stream, {"op": "hello", "version": VERSION, "nonce": server_nonce})
    msg = await _expect(stream, "auth", timeout)
    if msg.get("version", VERSION) != VERSION:
        await write_message(stream, {"op": "error", "message": "protocol version mismatch"})
        raise AuthenticationError(f"peer speaks protocol version {msg.get('version')}, "
                                  f"we speak {VERSION}")
    client_nonce = _nonce_field(msg, "nonce")
    expected = _mac(secret, b"distml-client", server_nonce, client_nonce)
    if not hmac.compare_digest(expected, _nonce_field(msg, "mac")):
        await write_message(stream, {"op": "error", "message": "authentication failed"})
        raise AuthenticationError("peer does not know the shared secret")
    await write_message(stream, {"op": "welcome",
                                 "mac": _mac(secret, b"distml-server", client_nonce,
                                             server_nonce)})


async def client_handshake(stream: IOStream, secret: bytes, timeout: float) -> None:
    """Authenticate to a server and check that it knows the secret too."""
    hello = await _expect(stream, "hello", timeout)
    if hello.get("version") != VERSION:
        raise AuthenticationError(f"server speaks protocol version {hello.get('version')}, "
                                  f"we speak {VERSION}")
    server_nonce = _nonce_field(hello, "nonce")
    client_nonce = os.urandom(NONCE_BYTES)
    await write_message(stream, {"op": "auth", "version": VERSION, "nonce": client_nonce,
                                 "mac": _mac(secret, b"distml-client", server_nonce,
                                             client_nonce)})
    welcome = await _expect(stream, "welcome", timeout)
    expected = _mac(secret, b"distml-server", client_nonce, server_nonce)
    if not hmac.compare_digest(expected, _nonce_field(welcome, "mac")):
        raise AuthenticationError("server does not know the shared secret")
