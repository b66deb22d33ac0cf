"""Listeners and connections over real sockets on loopback: round trips, hostile peers before
authentication, wrong secrets both ways, timeouts and TLS."""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import ssl
import struct
import subprocess

import msgpack
import numpy as np
import pytest

from distml.comm import Comm, Listener, connect, format_address, parse_address
from distml.config import Config
from distml.errors import (AuthenticationError, CommClosedError, ProtocolError, TimeoutError)
from distml.protocol import serialize
from distml.protocol.wire import encode

SECRET = "s3cret"


def config(**kw) -> Config:
    return Config(**{"secret": SECRET, "connect_timeout": 2.0, **kw})


def run(coro):
    """Run one test's coroutine, failing fast instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, 15))


def raw(header: dict, frames=()) -> bytes:
    return b"".join(bytes(b) for b in encode(header, frames))


def split_messages(data: bytes) -> list[tuple[str, int]]:
    """``(op, number of frames)`` of each message in ``data``, as a peer would see them."""
    out = []
    while data:
        count, header_bytes = struct.unpack_from("<IQ", data)
        lengths = struct.unpack_from(f"<{count}Q", data, 12)
        start = 12 + 8 * count
        out.append((msgpack.unpackb(data[start:start + header_bytes])["op"], count))
        data = data[start + header_bytes + sum(lengths):]
    return out


class Echo:
    """A listener whose handler answers every message with its header and frames."""

    def __init__(self, cfg: Config | None = None, address: str = "tcp://127.0.0.1:0"):
        self.received: list[dict] = []
        self.listener = Listener(address, self.handle, cfg or config())

    async def handle(self, comm: Comm) -> None:
        try:
            while True:
                header, frames = await comm.recv()
                self.received.append(header)
                await comm.send({**header, "echo": True}, frames)
        except CommClosedError:
            pass

    async def __aenter__(self) -> "Echo":
        await self.listener.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.listener.stop()


async def ping(address: str, cfg: Config | None = None) -> dict:
    comm = await connect(address, cfg or config())
    try:
        await comm.send({"op": "ping"})
        header, _ = await comm.recv()
        return header
    finally:
        await comm.close()


# ---------------------------------------------------------------------- addresses
def test_addresses_parse_and_format():
    assert parse_address("tcp://127.0.0.1:8786") == ("tcp", "127.0.0.1", 8786)
    assert parse_address("tls://node-1.example:0") == ("tls", "node-1.example", 0)
    assert parse_address("tcp://[::1]:8786") == ("tcp", "::1", 8786)
    assert format_address("tcp", "::1", 8786) == "tcp://[::1]:8786"
    assert format_address("tls", "h", 1) == "tls://h:1"


@pytest.mark.parametrize("bad", ["127.0.0.1:80", "udp://x:1", "tcp://host", "tcp://:80",
                                 "tcp://h:99999", "tcp://h:-1", "tcp://h: 80", "tcp://::1:80",
                                 "tcp://[::1]80", "tcp://h/x:80", 8786])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(ValueError, match="address"):
        parse_address(bad)


# ---------------------------------------------------------------------- round trips
def test_header_and_a_50_mb_array_round_trip():
    array = np.random.default_rng(0).standard_normal(6_250_000)  # 50 MB

    async def main():
        async with Echo() as server:
            comm = await connect(server.listener.address, config())
            frames = serialize.dumps({"x": array, "label": "big"})
            await comm.send({"op": "data", "blob": b"\x00\xff", "n": [1, 2]}, frames)
            header, received = await comm.recv()
            await comm.close()
            return header, received, comm

    header, received, comm = run(main())
    assert header == {"op": "data", "blob": b"\x00\xff", "n": [1, 2], "echo": True}
    out = serialize.loads(received)
    assert out["label"] == "big" and np.array_equal(out["x"], array)
    assert np.shares_memory(out["x"], np.frombuffer(received[1], dtype="u1"))  # zero-copy
    assert out["x"].flags.writeable
    assert comm.closed and comm.peer_address.startswith("tcp://127.0.0.1:")
    assert parse_address(comm.local_address)[1] == "127.0.0.1"


def test_concurrent_sends_do_not_interleave():
    blobs = [bytes([i]) * (200_000 + i) for i in range(30)]

    async def main():
        async with Echo() as server:
            comm = await connect(server.listener.address, config())
            await asyncio.gather(*(comm.send({"op": "m", "i": i}, [b])
                                   for i, b in enumerate(blobs)))
            replies = [await comm.recv() for _ in blobs]
            await comm.close()
            return replies

    for header, frames in run(main()):
        assert bytes(frames[0]) == blobs[header["i"]]


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def main():
        async with Echo(address="tcp://[::1]:0") as server:
            assert server.listener.address.startswith("tcp://[::1]:")
            return await ping(server.listener.address)

    assert run(main())["echo"]


def test_oversized_message_after_auth_closes_only_that_connection():
    async def main():
        errors = []

        async def handler(comm):
            try:
                await comm.recv()
            except ProtocolError as exc:
                errors.append(exc)

        listener = Listener("tcp://127.0.0.1:0", handler, config(max_frame_bytes=1000))
        await listener.start()
        try:
            comm = await connect(listener.address, config())
            await comm.send({"op": "big"}, [b"x" * 1001])
            reply, _ = await comm.recv()  # told why, so that it does not send it again
            assert reply["op"] == "error" and "exceeds the limit of 1000" in reply["message"]
            with pytest.raises(CommClosedError):
                await comm.recv()
            return errors
        finally:
            listener.stop()

    (error,) = run(main())
    assert "frame of 1001 bytes exceeds the limit of 1000" in str(error)


def test_handler_errors_are_logged_and_the_listener_keeps_serving(caplog):
    async def main():
        calls = []

        async def handler(comm):
            calls.append(comm)
            if len(calls) == 1:
                raise RuntimeError("handler bug")
            await comm.send({"op": "pong"})
            await comm.close()

        listener = Listener("tcp://127.0.0.1:0", handler, config())
        await listener.start()
        try:
            first = await connect(listener.address, config())
            with pytest.raises(CommClosedError):  # the failed handler's comm was closed
                await first.recv()
            second = await connect(listener.address, config())
            reply, _ = await second.recv()
            await first.close(), await second.close()
            return reply
        finally:
            listener.stop()

    assert run(main()) == {"op": "pong"}
    assert "handler bug" in caplog.text


def test_send_on_a_closed_comm_raises_comm_closed():
    async def main():
        async with Echo() as server:
            comm = await connect(server.listener.address, config())
            await comm.close()
            with pytest.raises(CommClosedError):
                await comm.send({"op": "late"})
            with pytest.raises(CommClosedError):
                await comm.recv()

    run(main())


# ---------------------------------------------------------------------- authentication
def test_wrong_secret_is_refused_and_the_handler_never_runs(caplog):
    async def main():
        async with Echo() as server:
            with pytest.raises(AuthenticationError, match="authentication failed"):
                await connect(server.listener.address, config(secret="wrong"))
            return server.received

    assert run(main()) == []
    assert "refused connection from tcp://127.0.0.1:" in caplog.text


def test_client_refuses_a_listener_with_another_secret():
    async def main():
        async with Echo(config(secret="impostor")) as impostor:
            with pytest.raises(AuthenticationError):
                await connect(impostor.listener.address, config())
            return impostor.received

    assert run(main()) == []


async def _scripted_server(messages: list[bytes]):
    """A fake server that sends ``messages`` (one per message from the client, starting with
    the first on accept) without knowing the secret."""

    async def serve(reader, writer):
        try:
            for i, data in enumerate(messages):
                if i:
                    await reader.read(65536)
                writer.write(data)
                await writer.drain()
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"


HELLO = {"op": "hello", "version": 1, "nonce": os.urandom(32)}


@pytest.mark.parametrize("script, error, match", [
    ([raw(HELLO), raw({"op": "welcome", "mac": os.urandom(32)})], AuthenticationError,
     "server does not know the shared secret"),
    ([raw(HELLO), raw({"op": "welcome"}, [pickle.dumps("payload")])], ProtocolError,
     "exceeds the limit of 0"),
    ([raw({**HELLO, "version": 2})], ProtocolError, "version 2"),
    ([b"HTTP/1.1 400 Bad Request\r\n\r\n"], ProtocolError, "exceeds the limit"),
])
def test_client_rejects_impostor_servers_at_once(script, error, match):
    async def main():
        server, address = await _scripted_server(script)
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(error, match=match):
                await connect(address, config(), timeout=5)
        finally:
            server.close()
        return asyncio.get_running_loop().time() - started

    assert run(main()) < 2  # no retrying against an impostor


# ---------------------------------------------------------------------- hostile peers
HOSTILE = {
    "random bytes": os.urandom(4096),
    "huge frame count": struct.pack("<I", 2**31) + b"\x00" * 64,
    "huge header length": struct.pack("<IQ", 0, 2**63),
    "huge frame length": struct.pack("<IQQ", 1, 10, 2**63),
    "frames before auth": raw({"op": "auth"}, [b"x" * 10]),
    "truncated": raw({"op": "auth", "nonce": b"n" * 32})[:-5],
    "unknown op": raw({"op": "please-unpickle", "data": pickle.dumps(1)}),
    "pickle instead of msgpack": struct.pack("<IQ", 0, 20) + pickle.dumps({"op": "x"})[:20],
    "auth without mac": raw({"op": "auth", "nonce": b"n" * 32}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_dropped_and_others_still_served(name, caplog):
    async def main():
        async with Echo() as server:
            _, host, port = parse_address(server.listener.address)
            reader, writer = await asyncio.open_connection(host, port)
            local_port = writer.get_extra_info("sockname")[1]
            writer.write(HOSTILE[name])
            writer.write_eof()
            received = await reader.read()  # until the server drops us
            writer.close()
            reply = await ping(server.listener.address)
            return local_port, received, reply, server.received

    local_port, received, reply, served = run(main())
    assert {op for op, _ in split_messages(received)} <= {"hello", "error"}
    assert reply == {"op": "ping", "echo": True}
    assert served == [{"op": "ping"}]  # only the authenticated peer reached the handler
    assert f"refused connection from tcp://127.0.0.1:{local_port}" in caplog.text


def test_a_silent_peer_does_not_block_others_and_is_dropped_after_the_timeout(caplog):
    async def main():
        async with Echo(config(connect_timeout=0.3)) as server:
            _, host, port = parse_address(server.listener.address)
            reader, writer = await asyncio.open_connection(host, port)
            reply = await ping(server.listener.address)  # served while the silent peer waits
            await reader.read()  # the server hangs up on the silent peer
            writer.close()
            return reply

    assert run(main()) == {"op": "ping", "echo": True}
    assert "did not finish within 0.3 s" in caplog.text


# ---------------------------------------------------------------------- connecting
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_a_closed_port_times_out_naming_the_address():
    port = _free_port()
    with pytest.raises(TimeoutError, match=f"tcp://127.0.0.1:{port} within 0.3 s"):
        run(connect(f"tcp://127.0.0.1:{port}", config(), timeout=0.3))


def test_connect_retries_until_the_listener_starts():
    port = _free_port()

    async def main():
        attempt = asyncio.ensure_future(connect(f"tcp://127.0.0.1:{port}", config(), timeout=5))
        await asyncio.sleep(0.2)  # no event to await: the listener must start after a refusal
        assert not attempt.done()
        async with Echo(address=f"tcp://127.0.0.1:{port}"):
            comm = await attempt
            await comm.send({"op": "ping"})
            header, _ = await comm.recv()
            await comm.close()
            return header

    assert run(main()) == {"op": "ping", "echo": True}


def test_no_secret_fails_before_connecting():
    with pytest.raises(ValueError, match="secret"):
        run(connect("tcp://127.0.0.1:1", Config(secret=None)))


# ---------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    tmp = tmp_path_factory.mktemp("tls")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    return server_ctx, client_ctx


def test_tls_round_trip(tls_contexts):
    server_ctx, client_ctx = tls_contexts
    array = np.arange(1_000_000, dtype="i8")

    async def main():
        async with Echo(config(ssl_server=server_ctx), "tls://127.0.0.1:0") as server:
            assert server.listener.address.startswith("tls://")
            comm = await connect(server.listener.address, config(ssl_client=client_ctx))
            await comm.send({"op": "hello-tls"}, serialize.dumps(array))
            header, frames = await comm.recv()
            await comm.close()
            return header, serialize.loads(frames)

    header, out = run(main())
    assert header == {"op": "hello-tls", "echo": True} and np.array_equal(out, array)


def test_tls_client_that_does_not_trust_the_server_fails_at_once(tls_contexts):
    server_ctx, _ = tls_contexts
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # system CAs only

    async def main():
        async with Echo(config(ssl_server=server_ctx), "tls://127.0.0.1:0") as server:
            with pytest.raises(AuthenticationError, match="TLS"):
                await connect(server.listener.address, config(ssl_client=untrusting), timeout=5)
            return server.received

    assert run(main()) == []


def test_plain_tcp_client_cannot_talk_to_a_tls_listener(tls_contexts):
    server_ctx, _ = tls_contexts

    async def main():
        async with Echo(config(ssl_server=server_ctx), "tls://127.0.0.1:0") as server:
            _, host, port = parse_address(server.listener.address)
            with pytest.raises((TimeoutError, ProtocolError)):
                await connect(f"tcp://{host}:{port}", config(), timeout=0.5)
            return server.received

    assert run(main()) == []


# ---------------------------------------------------------------------- alignment
@pytest.mark.parametrize("rows", [1, 7, 1000, 200_001])
def test_arrays_arrive_64_byte_aligned_over_tcp_after_odd_sized_frames(rows):
    # the pickle stream and the odd byte strings before each array have odd lengths
    rng = np.random.default_rng(rows)
    value = [b"x" * 13, rng.standard_normal((rows, 5)), np.arange(rows % 61 + 3, dtype="u1"),
             rng.standard_normal(rows).astype("f4"), b"y" * 4099, np.arange(rows, dtype="i8")]

    async def main():
        async with Echo() as server:
            comm = await connect(server.listener.address, config())
            await comm.send({"op": "data"}, [b"z" * 213, *serialize.dumps(value)])
            _, received = await comm.recv()
            await comm.close()
            return received

    received = run(main())
    assert bytes(received[0]) == b"z" * 213
    out = serialize.loads(received[1:])
    arrays = [a for a in out if isinstance(a, np.ndarray)]
    assert len(arrays) == 4 and out[0] == value[0] and out[4] == value[4]
    for got, sent in zip(arrays, [v for v in value if isinstance(v, np.ndarray)]):
        assert np.array_equal(got, sent) and got.ctypes.data % 64 == 0 and got.flags.writeable
