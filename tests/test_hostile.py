"""Hostile peers against a real cluster: fuzzed bytes, pickles from strangers, authenticated
peers that lie, handshake floods and wrong secrets. The cluster must keep serving its client."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import struct
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distml import AuthenticationError, Client, CommClosedError, LocalCluster
from distml.comm import connect, parse_address

from conftest import wait_until


def inc(x):
    return x + 1


def sleep_inc(x, delay):
    time.sleep(delay)
    return x + 1


def slow_inc(x):
    time.sleep(0.01)
    return x + 1


# ---------------------------------------------------------------------- helpers
def _addresses(cluster) -> dict[str, str]:
    return {"scheduler": cluster.scheduler_address, "worker": sorted(cluster.workers)[0]}


def raw_send(address: str, payload: bytes, timeout: float = 0.5) -> bytes:
    """Send ``payload`` over a plain socket, close our side, read until the server closes (or
    ``timeout`` passes) and return what it said."""
    _, host, port = parse_address(address)
    chunks = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def message(header, frames=()) -> bytes:
    """One message framed as the wire format says, whatever ``header`` is."""
    packed = msgpack.packb(header, use_bin_type=True)
    lengths = [len(packed)] + [len(f) for f in frames]
    return (struct.pack("<I", len(frames)) + struct.pack(f"<{len(lengths)}Q", *lengths) + packed
            + b"".join(frames))


def fake_auth() -> bytes:
    """A well-formed ``auth`` answer from someone who does not know the secret."""
    return message({"op": "auth", "version": 1, "nonce": os.urandom(32), "mac": os.urandom(32)})


def assert_alive(cluster, client, n: int) -> None:
    """The scheduler's loop thread and the worker processes live, and the cluster computes."""
    assert cluster._loop.thread.is_alive(), "the scheduler's event loop thread died"
    for sup in cluster.supervisors:  # a worker that died would have been restarted
        assert sup.process.returncode is None and sup.restarts == 0, \
            f"worker {sup.address} died (code {sup.process.returncode}, {sup.restarts} restarts)"
    assert len(cluster.workers) == 2
    assert client.submit(inc, n, pure=False).result(timeout=10) == n + 1


@pytest.fixture(scope="module")
def hclient(cluster):
    with Client(cluster) as c:
        yield c


# ---------------------------------------------------------------------- 1. fuzzing
MSGPACK_LEAVES = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                  | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=40))
MSGPACK_VALUES = st.recursive(
    MSGPACK_LEAVES,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(-5, 5), children, max_size=5),
    max_leaves=20)
OPS = st.sampled_from(["auth", "hello", "welcome", "error", "batch", "register-worker",
                       "register-client", "update-graph", "get-data", "put-data", "run", "ping",
                       "task-finished", "scatter"]) | st.text(max_size=12)

random_bytes = st.binary(min_size=0, max_size=2048)

small_or_any_u32 = st.integers(0, 4) | st.integers(0, 2**32 - 1)
small_or_any_u64 = st.integers(0, 5000) | st.integers(0, 2**64 - 1)
prefixed_bytes = st.builds(
    lambda n, lengths, tail: struct.pack("<I", n) + b"".join(struct.pack("<Q", x) for x in lengths)
    + tail,
    small_or_any_u32, st.lists(small_or_any_u64, max_size=4), st.binary(max_size=256))


@st.composite
def framed_msgpack(draw) -> bytes:
    if draw(st.booleans()):
        header = draw(MSGPACK_VALUES)  # often not a map, or a map without "op"
    else:
        header = draw(st.dictionaries(st.text(max_size=10), MSGPACK_VALUES, max_size=6))
        header["op"] = draw(OPS)
        if draw(st.booleans()):
            header["nonce"] = draw(st.binary(min_size=32, max_size=32))
            header["mac"] = draw(st.binary(min_size=32, max_size=32))
    frames = draw(st.lists(st.binary(max_size=64), max_size=3))
    payload = message(header, frames)
    if draw(st.booleans()):  # as if the handshake had gone through
        payload = fake_auth() + payload
    return payload


FUZZ = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def _fuzz(cluster, hclient, payload: bytes) -> None:
    for address in _addresses(cluster).values():
        raw_send(address, payload)
    assert_alive(cluster, hclient, len(payload))


@FUZZ
@given(payload=random_bytes)
def test_fuzz_random_bytes(cluster, hclient, payload):
    _fuzz(cluster, hclient, payload)


@FUZZ
@given(payload=prefixed_bytes)
def test_fuzz_length_prefixes(cluster, hclient, payload):
    _fuzz(cluster, hclient, payload)


@FUZZ
@given(payload=framed_msgpack())
def test_fuzz_framed_msgpack(cluster, hclient, payload):
    _fuzz(cluster, hclient, payload)


def test_fuzzed_cluster_still_serves_both_workers(cluster, hclient):
    pids = hclient.run(os.getpid)
    assert sorted(pids) == sorted(cluster.workers)
    assert sorted(pids.values()) == sorted(s.process.pid for s in cluster.supervisors)
    futures = hclient.map(slow_inc, range(40), pure=False)
    assert hclient.gather(futures, timeout=20) == list(range(1, 41))
    assert hclient.submit(sum, futures).result(timeout=10) == sum(range(1, 41))


# ---------------------------------------------------------------------- 2. pickles
class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_payloads(path: str) -> dict[str, bytes]:
    blob = pickle.dumps(Evil(path), protocol=5)
    frames_header = {"keys": ["k"], "nframes": [1]}
    out = {
        "raw pickle": blob,
        "raw pickle after a length prefix": struct.pack("<IQ", 0, len(blob)) + blob,
        "pickle as a frame": struct.pack("<IQQ", 1, 0, len(blob)) + blob,
        "pickle in a msgpack header": message({"op": "auth", "nonce": blob, "mac": blob}),
        "pickle as the op": message({"op": blob}),
        "put-data with a pickle frame": message({"op": "put-data", **frames_header}, [blob]),
        "run with a pickle frame": message({"op": "run"}, [blob]),
        "put-data as header bytes": message({"op": "put-data", "value": blob, **frames_header}),
        "register-client then a graph": message({"op": "register-client"}) + message(
            {"op": "update-graph", "tasks": {"k": {"payload": [blob], "deps": []}},
             "keys": ["k"]}),
    }
    for name, payload in list(out.items()):
        out[f"{name}, after a forged auth"] = fake_auth() + payload
    return out


def test_pickles_from_unauthenticated_peers_are_never_loaded(cluster, hclient, tmp_path):
    # the payload does what it should when loaded: proof that it would have left a trace
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(Evil(str(canary)))).close()
    assert canary.exists()

    target = tmp_path / "pwned"
    for name, payload in evil_payloads(str(target)).items():
        for role, address in _addresses(cluster).items():
            reply = raw_send(address, payload)
            assert b"welcome" not in reply, f"{name} to the {role} got past the handshake"
            # what the server answered, after its hello, is at most an error
            assert not target.exists(), f"{name} sent to the {role} was unpickled"
    time.sleep(0.5)  # anything that reached a worker's task threads would have run by now
    assert not target.exists()
    assert_alive(cluster, hclient, 7)


# ---------------------------------------------------------------------- 3. authenticated liars
@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of its own: these tests would leave a broken scheduler behind if they fail."""
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB") as c, \
            Client(c) as client:
        yield c, client


_ROGUE_PORTS = iter(range(4000, 5000))


def rogue_address() -> str:
    """An address nobody listens on, a new one for each fake worker (so that one test that
    leaves its fake worker behind does not make the next one fail)."""
    return f"tcp://10.255.255.1:{next(_ROGUE_PORTS)}"


async def _register_then(cluster, rogue: str, register: dict, then: list[dict]
                         ) -> tuple[list[dict], bool]:
    """Register a fake worker at ``rogue``, send ``then``, and return what the scheduler said,
    and whether it closed the connection (within 1 s) rather than keep serving it."""
    comm = await connect(cluster.scheduler_address, cluster.config)
    heard = []
    try:
        await comm.send({"op": "register-worker", "address": rogue, "nthreads": 1,
                         "memory_limit": 0, "name": "rogue", "keys": {}, **register})
        for msg in then:
            await comm.send(msg)
        while True:
            header, _ = await asyncio.wait_for(comm.recv(), 1)
            heard.append(header)
    except asyncio.TimeoutError:
        return heard, False
    except CommClosedError:
        return heard, True
    finally:
        await comm.close()


def _rogue_gone(cluster, rogue: str) -> bool:
    s = cluster.scheduler
    return (rogue not in s.state.workers and rogue not in s.streams and rogue not in s._comms
            and rogue not in s._last_seen)


def _assert_rogue_gone_and_served(cluster, client, rogue: str) -> None:
    wait_until(lambda: _rogue_gone(cluster, rogue), timeout=5,
               what=lambda: f"the scheduler still holds the dropped peer {rogue}: workers="
                            f"{sorted(cluster.scheduler.state.workers)}, "
                            f"streams={sorted(cluster.scheduler.streams)}")
    futures = client.map(inc, range(20), pure=False)
    assert client.gather(futures, timeout=15) == list(range(1, 21))


GARBAGE = {  # each a function of a key the cluster holds
    "unknown op": lambda key: [{"op": "rm-rf", "path": "/"}],
    "key of the wrong type": lambda key: [{"op": "task-finished", "key": 5, "nbytes": 1,
                                           "duration": 0.1}],
    "nbytes of the wrong type": lambda key: [{"op": "add-replica", "key": key, "nbytes": "lots"}],
    "bool as int": lambda key: [{"op": "task-finished", "key": key, "nbytes": True,
                                 "duration": 0.1}],
    "value not bytes": lambda key: [{"op": "task-finished", "key": key, "nbytes": 1,
                                     "duration": 1, "value": [1, 2]}],
    "batch of non-maps": lambda key: [{"op": "batch", "msgs": [1, "two", None]}],
    "batch not a list": lambda key: [{"op": "batch", "msgs": {"op": "heartbeat"}}],
    "client op from a worker": lambda key: [{"op": "update-graph", "tasks": {}, "keys": []}],
    "holders of the wrong type": lambda key: [{"op": "missing-data", "key": "k", "dep": key,
                                               "holders": [[1, 2], {"a": 1}]}],
    "heartbeat then garbage": lambda key: [{"op": "heartbeat"},
                                           {"op": "paused", "paused": "yes"}],
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_registered_worker_sending_garbage_is_dropped(own_cluster, name, caplog):
    cluster, client = own_cluster
    held = client.submit(inc, 1000, pure=False)
    assert held.result(timeout=10) == 1001
    rogue = rogue_address()
    with caplog.at_level(logging.WARNING):
        heard, closed = client._loop.run(_register_then(cluster, rogue, {},
                                                        GARBAGE[name](held.key)))
    assert heard and heard[0]["op"] == "registered"
    assert closed, f"the scheduler kept serving a worker that sent {GARBAGE[name](held.key)}"
    _assert_rogue_gone_and_served(cluster, client, rogue)
    assert any(rogue in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING), \
        "the scheduler dropped the peer without saying why"
    assert client.submit(inc, held).result(timeout=10) == 1002
    assert len(cluster.workers) == 2


BAD_REGISTRATIONS = {
    "memory_limit not a number": {"memory_limit": "lots"},
    "memory_limit a list": {"memory_limit": [1]},
    "memory_limit infinite": {"memory_limit": float("inf")},
    "nthreads negative": {"nthreads": -3},
    "nthreads not an int": {"nthreads": "1"},
    "keys not a map": {"keys": ["a"]},
    "keys of unknown tasks with wrong sizes": {"keys": {"nope": "x", "7": None}},
    "name a map": {"name": {"a": 1}},
}


@pytest.mark.parametrize("name", sorted(BAD_REGISTRATIONS))
def test_registration_with_wrong_field_types_leaves_nothing_behind(own_cluster, name):
    cluster, client = own_cluster
    rogue = rogue_address()
    client._loop.run(_register_then(cluster, rogue, BAD_REGISTRATIONS[name],
                                    [{"op": "heartbeat"}]))
    _assert_rogue_gone_and_served(cluster, client, rogue)


def test_registration_claiming_a_real_key_with_a_bad_size(own_cluster):
    """A fake worker claims to hold a key that is in memory, with a size that is not a number."""
    cluster, client = own_cluster
    held = client.submit(inc, 100, pure=False)
    assert held.result(timeout=10) == 101
    rogue = rogue_address()
    client._loop.run(_register_then(cluster, rogue, {"keys": {held.key: "x"}}, []))
    _assert_rogue_gone_and_served(cluster, client, rogue)
    assert client.submit(inc, held).result(timeout=10) == 102  # uses the key's size
    assert len(cluster.workers) == 2


def test_registration_claiming_a_running_key_with_a_bad_size(own_cluster):
    """A fake worker claims to hold the result of a task that is still running, with a size
    that is not a number: the claim must not corrupt the task or cost the real workers."""
    cluster, client = own_cluster
    running = client.submit(sleep_inc, 200, 1.0, pure=False)
    tasks = cluster.scheduler.state.tasks
    wait_until(lambda: getattr(tasks.get(running.key), "state", None) == "processing", timeout=5)
    rogue = rogue_address()
    client._loop.run(_register_then(cluster, rogue, {"keys": {running.key: "x"}}, []))
    _assert_rogue_gone_and_served(cluster, client, rogue)
    assert running.result(timeout=10) == 201
    assert client.submit(inc, running).result(timeout=10) == 202
    assert len(cluster.workers) == 2


# ---------------------------------------------------------------------- 4. handshake flood
def test_flood_of_half_open_handshakes(cluster, hclient):
    _, host, port = parse_address(cluster.scheduler_address)
    socks = []
    try:
        for i in range(200):
            sock = socket.create_connection((host, port), timeout=5)
            socks.append(sock)
            if i % 2:  # half of them start an answer and stall in the middle of it
                sock.sendall(struct.pack("<IQ", 0, 100) + b"\x82")
        started = time.perf_counter()
        with Client(cluster, timeout=10) as other:
            futures = other.map(inc, range(50), pure=False)
            assert other.gather(futures, timeout=10) == list(range(1, 51))
            assert other.submit(sum, futures).result(timeout=10) == sum(range(1, 51))
        assert time.perf_counter() - started < 10
        assert_alive(cluster, hclient, 11)
    finally:
        for sock in socks:
            sock.close()
    assert_alive(cluster, hclient, 12)


# ---------------------------------------------------------------------- 5. wrong secrets
@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_wrong_secret_is_refused(cluster, hclient, role):
    address = _addresses(cluster)[role]
    wrong = cluster.config.replace(secret="not-the-secret", connect_timeout=3)
    with pytest.raises(AuthenticationError):
        asyncio.run(connect(address, wrong))
    if role == "scheduler":
        with pytest.raises(AuthenticationError):
            Client(cluster.scheduler_address, secret="not-the-secret", timeout=3)
    assert_alive(cluster, hclient, 13)
