"""Serialization, framing and the handshake, over socket pairs wrapped in tornado streams."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
import sys
import threading
import types
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest
from tornado.iostream import IOStream

from distml.errors import (AuthenticationError, CommClosedError, ProtocolError,
                           SerializationError, TimeoutError)
from distml.protocol import auth, buffers, serialize, wire
from distml.protocol.wire import PREAUTH_LIMITS, Limits, encode, read_message, write_message

LIMITS = Limits(max_header_bytes=2**20, max_frame_bytes=2**24, max_frames=100)
SECRET = b"s3cret"


def run(coro):
    """Run one test's coroutine, failing fast instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, 10))


def stream_pair() -> tuple[IOStream, IOStream]:
    """Two connected streams (call inside the running loop)."""
    left, right = socket.socketpair()
    return IOStream(left), IOStream(right)


def raw(header: dict, frames=()) -> bytes:
    return b"".join(bytes(b) for b in encode(header, frames))


# ---------------------------------------------------------------------- serialization
@dataclass
class Record:
    name: str
    values: np.ndarray


def test_array_travels_out_of_band_and_loads_in_place_on_a_writable_frame():
    data = np.arange(1000, dtype="f8").reshape(10, 100)
    frames = serialize.dumps({"a": data, "n": 3})
    assert len(frames) == 2 and len(frames[0]) < 500  # the array is not inside the pickle
    assert np.shares_memory(np.frombuffer(frames[1], dtype="f8"), data)  # not copied to send
    received = [bytearray(f) for f in frames]  # as a socket read delivers them
    out = serialize.loads(received)
    assert np.array_equal(out["a"], data) and out["n"] == 3
    assert np.shares_memory(out["a"], np.frombuffer(received[1], dtype="u1"))
    out["a"][0, 0] = -1  # writable, used in place
    assert np.frombuffer(received[1], dtype="f8")[0] == -1


def test_nested_objects_with_arrays_and_fortran_order():
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    obj = {"records": [Record("a", np.ones(5)), Record("b", fortran)],
           "strided": np.arange(10)[::2], "tuple": (1, "x", None)}
    frames = serialize.dumps(obj)
    assert serialize.nbytes(frames) == sum(memoryview(f).nbytes for f in frames)
    out = serialize.loads([bytearray(f) for f in frames])
    assert out["records"][0].name == "a" and np.array_equal(out["records"][0].values, np.ones(5))
    assert np.array_equal(out["records"][1].values, fortran)
    assert out["records"][1].values.flags.f_contiguous
    assert np.array_equal(out["strided"], np.arange(10)[::2])
    assert out["tuple"] == (1, "x", None)


def test_pickle_buffers_are_not_copied():
    source = bytearray(b"x" * 10_000)
    frames = serialize.dumps(pickle.PickleBuffer(source))
    assert len(frames) == 2
    source[0] = ord("y")
    assert bytes(frames[1][:1]) == b"y"  # the frame is a view of the source


def test_arrays_beside_a_lambda_keep_their_buffers():
    data = np.arange(1000.0)
    frames = serialize.dumps((lambda x: x * 2, data))  # by value: cloudpickle's retry
    assert len(frames) == 2  # the array went out of band
    func, back = serialize.loads(frames)
    np.testing.assert_array_equal(func(back), data * 2)
    (inband,) = serialize.dumps((lambda x: x, data), out_of_band=False)
    np.testing.assert_array_equal(serialize.loads([inband])[1], data)


def test_lambdas_and_closures_go_by_value():
    offset = 5

    def local(x):
        return x * offset

    assert serialize.loads(serialize.dumps(lambda x: x + offset))(1) == 6
    assert serialize.loads(serialize.dumps(local))(2) == 10


def test_functions_in_main_go_by_value(monkeypatch):
    main = types.ModuleType("__main__")
    exec("def triple(x):\n    return 3 * x\n", main.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", main)
    frames = serialize.dumps(main.triple)  # the standard pickler would store a reference
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    assert serialize.loads(frames)(2) == 6  # found without __main__.triple: it went by value


def test_unpicklable_object_names_its_type_and_the_error():
    with pytest.raises(SerializationError, match="lock.*cannot pickle"):
        serialize.dumps(threading.Lock())
    with pytest.raises(SerializationError, match="dict"):
        serialize.dumps({"lock": threading.Lock()})


# ---------------------------------------------------------------------- framing
def test_encode_layout_and_no_copies():
    payload = b"p" * 100
    view = memoryview(bytearray(b"v" * 10))
    buffers = encode({"op": "x"}, [payload, view])
    packed = msgpack.packb({"op": "x"}, use_bin_type=True)
    assert bytes(buffers[0]) == struct.pack("<IQQQ", 2, len(packed), 100, 10) + packed
    assert buffers[1] is payload and buffers[2] is view


def test_encode_flattens_typed_frames_and_refuses_what_it_cannot_send():
    array = np.arange(6, dtype="i8").reshape(2, 3)
    (_, frame) = encode({"op": "x"}, [array])
    assert memoryview(frame).nbytes == 48 and len(frame) == 48
    with pytest.raises(ProtocolError, match="contiguous"):
        encode({"op": "x"}, [array[:, ::2]])
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode({"op": "x", "value": object()})


def test_messages_round_trip_with_all_header_types():
    header = {"op": "data", "bytes": b"\x00\xff", "text": "é", "int": -2**62, "float": 1.5,
              "flags": [True, False, None], "nested": {"a": [1, {"b": b""}]}, 7: "int key",
              "tuple": (1, 2)}
    array = np.random.default_rng(0).standard_normal((100, 10))

    async def main():
        left, right = stream_pair()
        await write_message(left, header, [b"abc", b"", array, bytearray(b"z" * 5000)])
        await write_message(left, {"op": "second"})
        first = await read_message(right, LIMITS)
        second = await read_message(right, LIMITS)
        left.close(), right.close()
        return first, second

    (got, frames), second = run(main())
    assert got == {**header, "tuple": [1, 2]}
    assert [bytes(f) for f in frames[:2]] == [b"abc", b""]
    received = np.frombuffer(frames[2], dtype="f8").reshape(100, 10)
    assert np.array_equal(received, array) and received.flags.writeable
    assert bytes(frames[3]) == b"z" * 5000
    assert second == ({"op": "second"}, [])


def test_large_messages_are_read_in_chunks(monkeypatch):
    monkeypatch.setattr(wire, "CHUNK_BYTES", 1000)
    sizes = [10, 500, 700, 3000, 0, 1, 999]
    assert list(wire._chunks(sizes)) == [(0, 2), (2, 3), (3, 4), (4, 7)]
    frames = [bytes([i]) * n for i, n in enumerate(sizes)]

    async def main():
        left, right = stream_pair()
        await write_message(left, {"op": "big"}, frames)
        message = await read_message(right, LIMITS)
        left.close(), right.close()
        return message

    header, got = run(main())
    assert header == {"op": "big"} and [bytes(f) for f in got] == frames


def test_messages_larger_than_the_stream_buffer_arrive(monkeypatch):
    # tornado refuses any single read beyond its max_buffer_size, even into our own buffer
    monkeypatch.setattr(wire, "CHUNK_BYTES", 2**16)
    limits = Limits(max_header_bytes=2**10, max_frame_bytes=2**17, max_frames=100)
    frames = [bytes([i]) * 2**17 for i in range(40)]  # 5 MiB, the buffer is about 1 MiB

    async def main():
        left, right = socket.socketpair()
        writer = IOStream(left)
        reader = IOStream(right, max_buffer_size=limits.stream_buffer_bytes)
        sent = asyncio.ensure_future(write_message(writer, {"op": "big"}, frames))
        message = await read_message(reader, limits)
        await sent
        writer.close(), reader.close()
        return message

    header, got = run(main())
    assert header == {"op": "big"} and [bytes(f) for f in got] == frames


def test_concurrent_writers_never_interleave():
    async def main():
        left, right = stream_pair()
        blobs = [bytes([i]) * (100_000 + i) for i in range(20)]
        sent = asyncio.gather(*(write_message(left, {"op": "m", "i": i}, [b])
                                for i, b in enumerate(blobs)))
        received = [await read_message(right, LIMITS) for _ in blobs]
        await sent
        left.close(), right.close()
        return blobs, received

    blobs, received = run(main())
    for header, frames in received:
        assert bytes(frames[0]) == blobs[header["i"]]


async def _read_raw(data: bytes, limits: Limits = LIMITS, close: bool = False):
    left, right = stream_pair()
    await left.write(data)
    if close:
        left.close()
    try:
        return await read_message(right, limits)
    finally:
        left.close(), right.close()


def framed(header: bytes) -> bytes:
    """A frameless message whose header is ``header`` (valid msgpack or not)."""
    return struct.pack("<IQ", 0, len(header)) + header


@pytest.mark.parametrize("data, limits, match", [
    (struct.pack("<IQ", 101, 2), LIMITS, "101 frames exceeds the limit of 100"),
    (struct.pack("<IQQ", 1, 9, 2**63), LIMITS,
     f"frame of {2**63} bytes exceeds the limit of {2**24}"),
    (struct.pack("<IQ", 0, 2**20 + 1), LIMITS, "header of 1048577 bytes exceeds"),
    (raw({"op": "auth"}, [b"x"]), PREAUTH_LIMITS, "1 frames exceeds the limit of 0"),
    (struct.pack("<IQ", 0, 5000), PREAUTH_LIMITS, "header of 5000 bytes exceeds the limit of 4096"),
    (framed(b"\xc1\xc1\xc1"), LIMITS, "malformed"),
    (framed(pickle.dumps({"op": "x"})), LIMITS, "malformed"),
    (framed(b""), LIMITS, "malformed"),
    (framed(b"\x91" * 5000 + b"\x80"), LIMITS, "malformed"),  # nested too deep
    (framed(msgpack.packb({"op": "x"}) + b"\x01"), LIMITS, "malformed"),  # trailing data
    (framed(msgpack.packb({(1,): "x"})), LIMITS, "malformed"),  # unhashable key
    (framed(msgpack.packb([1, 2, 3])), LIMITS, "is a list, not a map"),
    (framed(msgpack.packb({"a": 1})), LIMITS, "no 'op' string"),
    (framed(msgpack.packb({"op": 1})), LIMITS, "no 'op' string"),
    (framed(msgpack.packb({"op": msgpack.ExtType(5, b"x")})), LIMITS, "extension type 5"),
])
def test_bad_messages_raise_protocol_error(data, limits, match):
    with pytest.raises(ProtocolError, match=match):
        run(_read_raw(data, limits, close=True))


@pytest.mark.parametrize("data", [b"", b"\x00\x00", raw({"op": "x"}, [b"0123456789"])[:-3]])
def test_closed_streams_raise_comm_closed(data):
    with pytest.raises(CommClosedError):
        run(_read_raw(data, close=True))


def test_limits_size_tornado_buffers_for_the_largest_read():
    limits = Limits(max_header_bytes=10, max_frame_bytes=2**31, max_frames=5)
    assert limits.stream_buffer_bytes > 2**31


# ---------------------------------------------------------------------- handshake
async def _handshake(server_secret: bytes, client_secret: bytes, timeout: float = 5):
    left, right = stream_pair()
    results = await asyncio.gather(auth.server_handshake(left, server_secret, timeout),
                                   auth.client_handshake(right, client_secret, timeout),
                                   return_exceptions=True)
    left.close(), right.close()
    return results


def test_handshake_succeeds_with_the_same_secret():
    assert run(_handshake(SECRET, SECRET)) == [None, None]


def test_handshake_fails_on_both_sides_with_different_secrets():
    server, client = run(_handshake(SECRET, b"wrong"))
    assert isinstance(server, AuthenticationError) and "does not know" in str(server)
    assert isinstance(client, AuthenticationError) and "authentication failed" in str(client)


async def _fake_server(replies, timeout: float = 5):
    """Run a client handshake against a scripted server: ``replies(client_msg)`` is called
    with each message the client sends (``None`` first) and returns raw bytes to send."""
    left, right = stream_pair()
    client = asyncio.ensure_future(auth.client_handshake(right, SECRET, timeout))
    msg = None
    try:
        for i, reply in enumerate(replies):
            if i:
                msg, _ = await read_message(left, PREAUTH_LIMITS)
            await left.write(reply(msg))
        return await client
    finally:
        left.close(), right.close()


HELLO = {"op": "hello", "version": 1, "nonce": b"n" * 32}


def test_client_rejects_a_server_without_the_secret():
    with pytest.raises(AuthenticationError, match="server does not know the shared secret"):
        run(_fake_server([lambda _: raw(HELLO), lambda _: raw({"op": "welcome",
                                                               "mac": b"m" * 32})]))


def test_client_never_reads_frames_from_an_unauthenticated_server():
    payload = pickle.dumps("not for you")
    with pytest.raises(ProtocolError, match="exceeds the limit of 0"):
        run(_fake_server([lambda _: raw(HELLO), lambda _: raw({"op": "welcome"}, [payload])]))


@pytest.mark.parametrize("hello, match", [
    ({**HELLO, "version": 2}, "version 2.*this process speaks version 1"),
    ({"op": "hello", "version": 1}, "lacks \\['nonce'\\]"),
    ({**HELLO, "nonce": b"short"}, "'nonce' must be 32 bytes"),
    ({**HELLO, "nonce": "n" * 32}, "'nonce' must be 32 bytes"),
    ({**HELLO, "extra": 1}, "unexpected fields"),
    ({"op": "welcome", "mac": b"m" * 32}, "expected 'hello'"),
])
def test_client_rejects_malformed_hellos(hello, match):
    with pytest.raises(ProtocolError, match=match):
        run(_fake_server([lambda _: raw(hello)]))


def test_server_reports_a_version_mismatch_to_the_client():
    async def main():
        left, right = stream_pair()
        server = asyncio.ensure_future(auth.server_handshake(left, SECRET, 5))
        hello, _ = await read_message(right, PREAUTH_LIMITS)
        await write_message(right, {"op": "auth", "version": 99, "nonce": b"c" * 32,
                                    "mac": b"m" * 32})
        reply, _ = await read_message(right, PREAUTH_LIMITS)
        with pytest.raises(ProtocolError, match="version 99"):
            await server
        left.close(), right.close()
        return hello, reply

    hello, reply = run(main())
    assert hello["op"] == "hello" and len(hello["nonce"]) == 32
    assert reply["op"] == "error" and "version 99" in reply["message"]


def test_a_recorded_auth_message_cannot_be_replayed():
    async def main():
        # record what an honest client sends to a server that stops after the hello
        left, right = stream_pair()
        client = asyncio.ensure_future(auth.client_handshake(right, SECRET, 5))
        await write_message(left, HELLO)
        recorded, _ = await read_message(left, PREAUTH_LIMITS)
        left.close()
        with pytest.raises(CommClosedError):
            await client
        right.close()
        # replay it to a real server, which chose a fresh nonce
        left, right = stream_pair()
        server = asyncio.ensure_future(auth.server_handshake(left, SECRET, 5))
        await read_message(right, PREAUTH_LIMITS)
        await write_message(right, recorded)
        with pytest.raises(AuthenticationError):
            await server
        left.close(), right.close()

    run(main())


def test_silent_peer_times_out():
    async def main():
        left, right = stream_pair()
        try:
            await auth.server_handshake(left, SECRET, 0.2)
        finally:
            left.close(), right.close()

    with pytest.raises(TimeoutError, match="within 0.2 s"):
        run(main())


# ---------------------------------------------------------------------- alignment
def address_of(frame: memoryview) -> int:
    return np.frombuffer(frame, dtype="u1").ctypes.data


def test_aligned_parts_start_on_64_byte_boundaries_in_one_allocation():
    lengths = [3, 0, 1, 64, 65, 127, 4096, 7]
    parts = buffers.aligned_parts(lengths)
    assert [p.nbytes for p in parts] == lengths
    assert all(p.obj is parts[0].obj for p in parts)  # one allocation
    assert [address_of(p) % 64 for p in parts if p.nbytes] == [0] * 7
    assert all(not p.readonly for p in parts)
    assert buffers.padded(0) == 0 and buffers.padded(1) == 64 and buffers.padded(64) == 64
    assert buffers.aligned_parts([0, 0])[1].nbytes == 0 and buffers.aligned_parts([]) == []


@pytest.mark.parametrize("chunk_bytes", [wire.CHUNK_BYTES, 300])
def test_frames_arrive_64_byte_aligned_after_odd_sized_frames(monkeypatch, chunk_bytes):
    # odd-sized frames before each array would put it at an odd offset of a back-to-back buffer
    monkeypatch.setattr(wire, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    sizes = [1, 3, 13, 63, 65, 213, 1001, 4099]
    frames = []
    for i, size in enumerate(sizes):
        frames.append(bytes([i]) * size)
        frames.append(rng.standard_normal(size % 97 + 1).tobytes())

    async def main():
        left, right = stream_pair()
        await write_message(left, {"op": "odd", "pad": "x" * 7}, frames)
        obj = {"a": np.arange(5, dtype="i1"), "b": rng.standard_normal((33, 3)),
               "c": np.arange(7, dtype="u2"), "d": rng.standard_normal(1000)}
        await write_message(left, {"op": "objects"}, serialize.dumps(obj))
        messages = [await read_message(right, LIMITS) for _ in range(2)]
        left.close(), right.close()
        return obj, messages

    obj, [(header, got), (_, object_frames)] = run(main())
    assert header == {"op": "odd", "pad": "x" * 7} and [bytes(f) for f in got] == frames
    assert [address_of(f) % 64 for f in got] == [0] * len(frames)
    out = serialize.loads(object_frames)
    for name, array in out.items():
        assert np.array_equal(array, obj[name])
        assert array.ctypes.data % 64 == 0 and array.flags.aligned and array.flags.writeable
