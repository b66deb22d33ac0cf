"""Task arguments of any size: small ones inside the message header, large ones as frames that
bypass the header's size limit; arguments the scheduler would refuse fail at submission."""

from __future__ import annotations

import numpy as np
import pytest

from distml import Client, Config, LocalCluster
from distml.batched import BatchedStream, unbatch
from distml.errors import KeyLostError, ProtocolError
from distml.protocol import payload

MB = 2**20


def total(x):
    return float(np.sum(x))


def scale_in_place(x):
    x *= 2  # the argument arrives writable: no copy needed to modify it
    return x


@pytest.fixture(scope="module")
def small_header_cluster():
    """Headers limited to 1 MB, frames to 8 MB, on every process of the cluster."""
    config = Config.load().replace(max_header_bytes=MB, max_frame_bytes=8 * MB)
    with LocalCluster(n_workers=1, threads_per_worker=1, config=config) as cluster:
        yield cluster


def test_arguments_larger_than_the_header_limit_travel_as_frames(small_header_cluster):
    x = np.arange(500_000, dtype=float)  # 4 MB: four times the header limit
    with Client(small_header_cluster) as client:
        assert client.submit(total, x).result(timeout=30) == float(np.sum(x))
        doubled = client.map(scale_in_place, [x, x[:1000]], pure=False)
        got = client.gather(doubled, timeout=30)
        assert np.array_equal(got[0], 2 * x) and np.array_equal(got[1], 2 * x[:1000])
        assert x[1] == 1.0  # the caller's array is untouched


def test_an_argument_over_the_frame_limit_fails_at_submission(small_header_cluster):
    with Client(small_header_cluster) as client:
        with pytest.raises(ValueError, match="max_frame_bytes"):
            client.submit(total, np.zeros(2 * MB))  # 16 MB
        with pytest.raises(ValueError, match="max_header_bytes"):
            client.map(total, [np.full(7000, i) for i in range(20)])  # 56 kB each, inline
        assert client.submit(total, np.ones(10)).result(timeout=30) == 10.0  # still usable


def test_a_refused_message_fails_the_futures_instead_of_resubmitting_forever(
        small_header_cluster):
    lenient = small_header_cluster.config.replace(max_frame_bytes=2**31)
    with Client(small_header_cluster.scheduler_address, config=lenient) as client:
        future = client.submit(total, np.zeros(2 * MB))
        with pytest.raises(KeyLostError, match="refused a message.*exceeds the limit"):
            future.result(timeout=30)


def test_payload_parts_round_trip_through_header_and_frames():
    frames: list = []
    parts = [b"f", b"a" * 10, memoryview(bytearray(payload.INLINE_BYTES + 1))]
    header = payload.to_header(parts, frames)
    assert header[:2] == parts[:2] and header[2] == 0 and len(frames) == 1
    assert payload.from_header(header, frames) == parts
    for bad in ([b"f", 1], [b"f", -1], [b"f", True], [b"f", "text"], b"f"):
        with pytest.raises(ProtocolError):
            payload.from_header(bad, frames)


def test_a_batch_keeps_each_messages_frames():
    msgs = [({"op": "a"}, [b"1", b"2"]), ({"op": "b"}, []), ({"op": "c"}, [b"3"])]
    header, frames = BatchedStream._message([m for m, _ in msgs],
                                            {i: f for i, (_, f) in enumerate(msgs) if f})
    assert header["nframes"] == [2, 0, 1] and frames == [b"1", b"2", b"3"]
    assert [(m, list(f)) for m, f in unbatch(header, frames)] == msgs
    for nframes in ([2, 0], [2, 0, 2], [2, -1, 2], "3"):
        with pytest.raises(ValueError, match="nframes"):
            unbatch({**header, "nframes": nframes}, frames)
    with pytest.raises(ValueError, match="no 'nframes'"):
        unbatch({"op": "batch", "msgs": [{"op": "a"}]}, [b"1"])
