"""In-process connections (a local cluster's client and scheduler): what a socket would
deliver, and the same limits and closing as one."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from distml import Client
from distml.comm import Comm
from distml.config import Config
from distml.errors import CommClosedError, ProtocolError
from distml.inproc import InProcessComm, comm_pair

CONFIG = Config(secret="s", max_header_bytes=1000)


def run(coro):
    return asyncio.run(coro)


def test_messages_arrive_as_from_a_socket():
    async def main():
        client, server = comm_pair("tcp://127.0.0.1:1", CONFIG)
        mutable = bytearray(b"abc")
        array = np.arange(4, dtype="float64")
        await client.send({"op": "x", "keys": ("a", "b")}, [b"immutable", mutable, array])
        mutable[:] = b"zzz"  # the sender reuses its buffer: the message is not changed
        header, frames = await server.recv()
        return header, frames, array

    header, frames, array = run(main())
    assert header == {"op": "x", "keys": ["a", "b"]}  # msgpack's lists, as on the wire
    assert [bytes(f) for f in frames] == [b"immutable", b"abc", array.tobytes()]
    assert all(isinstance(f, memoryview) for f in frames)
    assert not frames[1].readonly  # copies are the receiver's own


def test_header_that_is_not_msgpack_data_is_refused_at_the_sender():
    async def main():
        client, _ = comm_pair("tcp://127.0.0.1:1", CONFIG)
        await client.send({"op": "x", "value": object()})

    with pytest.raises(ProtocolError, match="cannot encode header"):
        run(main())


def test_message_over_the_limits_closes_the_connection_and_tells_the_sender():
    async def main():
        client, server = comm_pair("tcp://127.0.0.1:1", CONFIG)
        await client.send({"op": "x", "blob": b"x" * 2000})
        with pytest.raises(ProtocolError, match="exceeds the limit of 1000"):
            await server.recv()
        reply, _ = await client.recv()
        assert reply["op"] == "error" and "exceeds" in reply["message"]
        with pytest.raises(CommClosedError):
            await client.recv()
        assert server.closed and client.closed

    run(main())


def test_closing_delivers_what_was_sent_before_then_ends_both_sides():
    async def main():
        client, server = comm_pair("tcp://127.0.0.1:1", CONFIG)
        await client.send({"op": "first"})
        await client.close()
        header, _ = await server.recv()
        assert header["op"] == "first"
        with pytest.raises(CommClosedError):
            await server.recv()
        with pytest.raises(CommClosedError):
            await server.send({"op": "late"})
        with pytest.raises(CommClosedError):
            await client.send({"op": "late"})

    run(main())


def test_a_waiting_receiver_wakes_when_its_own_end_closes():
    async def main():
        client, _ = comm_pair("tcp://127.0.0.1:1", CONFIG)
        waiting = asyncio.get_running_loop().create_task(client.recv())
        await asyncio.sleep(0)
        await client.close()
        with pytest.raises(CommClosedError):
            await waiting

    run(main())


def test_a_local_clusters_client_connects_in_process_others_over_tcp():
    with Client(n_workers=1, threads_per_worker=1) as local:
        assert isinstance(local._comm, InProcessComm)
        with Client(local.scheduler_address, secret=local.config.secret,
                    set_as_default=False) as remote:
            assert isinstance(remote._comm, Comm)
            future = local.submit(sum, [1, 2, 3])
            assert future.result() == 6
            assert remote.submit(sum, [4, 5]).result() == 9
        info = local.scheduler_info()
        assert len(info["workers"]) == 1
