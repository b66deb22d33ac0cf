"""Serialization, framing and authentication, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import numpy as np
import pytest

from distml.comm import Listener, connect, parse_address
from distml.config import Config
from distml.errors import AuthenticationError, SerializationError, TimeoutError
from distml.protocol import serialize
from distml.protocol.wire import encode

SECRET = "s3cret"


def config(**kw):
    return Config(secret=SECRET, connect_timeout=2.0, **kw)


# ---------------------------------------------------------------------- serialization
def test_arrays_travel_out_of_band_and_load_in_place():
    data = np.arange(1000, dtype="f8").reshape(10, 100)
    frames = serialize.dumps({"a": data, "n": 3})
    assert len(frames) == 2 and len(frames[0]) < 500  # the array is not inside the pickle
    received = [bytearray(f) for f in frames]  # as a socket read would deliver them
    out = serialize.loads(received)
    assert np.array_equal(out["a"], data) and out["n"] == 3
    assert np.shares_memory(out["a"], np.frombuffer(received[1], dtype="u1"))
    out["a"][0, 0] = -1  # writable, no copy made


def test_lambdas_and_closures_go_by_value():
    offset = 5
    frames = serialize.dumps(lambda x: x + offset)
    assert serialize.loads(frames)(1) == 6


def test_unpicklable_object_names_its_type():
    with pytest.raises(SerializationError, match="lock"):
        serialize.dumps(threading.Lock())


def test_header_and_frames_round_trip():
    async def main():
        got = asyncio.get_running_loop().create_future()

        async def handler(comm):
            got.set_result(await comm.recv())

        listener = Listener("tcp://127.0.0.1:0", handler, config())
        await listener.start()
        comm = await connect(listener.address, config())
        array = np.random.default_rng(0).standard_normal(6_250_000)  # 50 MB
        await comm.send({"op": "data", "n": 1, "blob": b"\x00\xff"}, serialize.dumps(array)[1:])
        header, frames = await asyncio.wait_for(got, 10)
        await comm.close()
        listener.stop()
        return header, frames, array

    header, frames, array = asyncio.run(main())
    assert header == {"op": "data", "n": 1, "blob": b"\x00\xff"}
    assert np.array_equal(np.frombuffer(frames[0], dtype="f8"), array)


# ---------------------------------------------------------------------- hostile peers
def _raw_send(address, payload: bytes) -> bytes:
    """Connect with a plain socket, send ``payload``, return what the server says until it
    closes the connection."""
    _, host, port = parse_address(address)
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


HOSTILE = {
    "random bytes": os.urandom(4096),
    "huge frame count": struct.pack("<I", 2**31) + b"\x00" * 64,
    "huge header length": struct.pack("<IQ", 0, 2**63),
    "frames before auth": bytes(encode({"op": "auth"}, [b"x" * 10])[0]) + b"x" * 10,
    "truncated": bytes(encode({"op": "auth", "nonce": b"n" * 32})[0])[:-5],
    "unknown op": bytes(encode({"op": "please-unpickle", "data": pickle.dumps(1)})[0]),
    "pickle instead of msgpack": struct.pack("<IQ", 0, 20) + pickle.dumps({"op": "x"})[:20],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_dropped_and_others_still_served(name, caplog):
    async def main():
        served = []

        async def handler(comm):
            header, _ = await comm.recv()
            served.append(header)
            await comm.send({"op": "pong"})

        listener = Listener("tcp://127.0.0.1:0", handler, config())
        await listener.start()
        await asyncio.get_running_loop().run_in_executor(None, _raw_send, listener.address,
                                                         HOSTILE[name])
        comm = await connect(listener.address, config())
        await comm.send({"op": "ping"})
        reply, _ = await comm.recv()
        listener.stop()
        return served, reply

    served, reply = asyncio.run(main())
    assert served == [{"op": "ping"}]  # only the authenticated peer reached the handler
    assert reply == {"op": "pong"}


def test_wrong_secret_is_refused_on_both_sides():
    async def main():
        reached = []

        async def handler(comm):
            reached.append(comm)

        listener = Listener("tcp://127.0.0.1:0", handler, config())
        await listener.start()
        try:
            with pytest.raises(AuthenticationError):
                await connect(listener.address, Config(secret="wrong", connect_timeout=2))
        finally:
            listener.stop()
        return reached

    assert asyncio.run(main()) == []


def test_client_refuses_a_server_without_the_secret():
    async def main():
        impostor = Listener("tcp://127.0.0.1:0", lambda comm: asyncio.sleep(0),
                            Config(secret="impostor"))
        await impostor.start()
        try:
            with pytest.raises(AuthenticationError):
                await connect(impostor.address, config())
        finally:
            impostor.stop()

    asyncio.run(main())


def test_connect_to_nothing_times_out():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TimeoutError, match=str(port)):
        asyncio.run(connect(f"tcp://127.0.0.1:{port}", config(), timeout=0.3))


def test_bad_addresses():
    for bad in ["127.0.0.1:80", "udp://x:1", "tcp://host", "tcp://:80", "tcp://h:99999"]:
        with pytest.raises(ValueError):
            parse_address(bad)
    assert parse_address("tcp://[::1]:8786") == ("tcp", "::1", 8786)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_round_trip(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))

    async def main():
        got = asyncio.get_running_loop().create_future()

        async def handler(comm):
            got.set_result((await comm.recv())[0])

        listener = Listener("tls://127.0.0.1:0", handler, config(ssl_server=server_ctx))
        await listener.start()
        comm = await connect(listener.address, config(ssl_client=client_ctx))
        await comm.send({"op": "hello-tls"})
        header = await asyncio.wait_for(got, 5)
        listener.stop()
        return header

    assert asyncio.run(main()) == {"op": "hello-tls"}
