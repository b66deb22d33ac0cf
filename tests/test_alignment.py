"""Arrays that reach a process (scattered, gathered, fetched from a peer, read back from spill)
start 64-byte aligned, so numpy uses BLAS on them (odd addresses made it fall back to its own,
ten times slower loops that round differently)."""

from __future__ import annotations

import numpy as np
import pytest

from distml.worker.spill import SpillBuffer

#: The number of rows of each array; the byte strings between them have odd lengths, so a
#: back-to-back receive buffer would put most arrays at odd addresses.
ROWS = [1, 7, 1001, 20_011]


def odd_values(seed: int) -> list:
    rng = np.random.default_rng(seed)
    values: list = []
    for rows in ROWS:
        values.append(b"p" * (rows % 63 + 1))
        values.append(rng.standard_normal((rows, 3)))
        values.append(np.arange(rows, dtype="i4"))
    return values


def array_offsets(value) -> list[int]:
    """``address % 64`` of each array in ``value`` (a list, or one array)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [a.ctypes.data % 64 for a in items if isinstance(a, np.ndarray)]


def assert_same(got: list, sent: list) -> None:
    assert len(got) == len(sent)
    for g, s in zip(got, sent):
        assert np.array_equal(g, s) if isinstance(s, np.ndarray) else g == s


def test_scattered_submitted_and_gathered_arrays_are_aligned(client):
    values = odd_values(1)
    futures = client.scatter(values)  # one put-data message per worker, odd frames in between
    offsets = client.gather([client.submit(array_offsets, f) for f in futures], timeout=30)
    assert sum(offsets, []) == [0] * (2 * len(ROWS))
    gathered = client.gather(futures, timeout=30)  # one get-data message per worker
    assert_same(gathered, values)
    assert array_offsets(gathered) == [0] * (2 * len(ROWS))


def test_arrays_in_task_arguments_are_aligned_and_writable(client):
    # small buffers travel inside the message header and are copied into aligned memory on the
    # worker; large ones (the 20,011-row array) travel as frames, received aligned in place
    def flags(values):
        return [(a.ctypes.data % 64, a.flags.writeable) for a in values
                if isinstance(a, np.ndarray)]

    values = odd_values(6)
    got = client.submit(flags, values, pure=False).result(timeout=30)
    assert got == [(0, True)] * (2 * len(ROWS))


def test_arrays_a_worker_fetches_from_a_peer_are_aligned(client):
    first, second = sorted(client.scheduler_info()["workers"])
    small = odd_values(2)
    big = np.random.default_rng(3).standard_normal(1_000_000)  # 8 MB: the task runs beside it
    small_futures = client.scatter(small, workers=[first])
    [big_future] = client.scatter([big], workers=[second])

    def offsets_of(values, anchor):
        return array_offsets(values), anchor.size

    got = client.submit(offsets_of, small_futures, big_future, pure=False).result(timeout=30)
    assert got == ([0] * (2 * len(ROWS)), big.size)
    holders = client.who_has(small_futures)
    assert all(second in holders[f.key] for f in small_futures)  # fetched from the peer


@pytest.mark.parametrize("seed", [4, 5])
def test_spilled_arrays_come_back_aligned(tmp_path, seed):
    buffer = SpillBuffer(target=1, directory=str(tmp_path))
    values = odd_values(seed)
    buffer["a"] = values
    buffer["b"] = b"evicts a"
    assert "a" in buffer.slow
    back = buffer["a"]
    assert buffer.unspill_count == 1
    assert_same(back, values)
    assert array_offsets(back) == [0] * (2 * len(ROWS))
    buffer.close()
