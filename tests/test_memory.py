"""Memory limits: spilling to disk, pausing, and what the scheduler and client see of it."""

from __future__ import annotations

import numpy as np
import pytest

from distml import Client, LocalCluster
from distml.cluster import parse_memory
from distml.worker.spill import SpillBuffer


def test_spill_buffer_keeps_recent_values_in_memory(tmp_path):
    buf = SpillBuffer(target=3_000_000, directory=str(tmp_path))
    arrays = {f"a{i}": np.full(125_000, i, dtype="f8") for i in range(5)}  # 1 MB each
    for key, value in arrays.items():
        buf[key] = value
    assert set(buf.fast) == {"a2", "a3", "a4"} and set(buf.slow) == {"a0", "a1"}
    assert buf.spilled_bytes == 2_000_000 and buf.fast_bytes == 3_000_000
    assert len(list(tmp_path.iterdir())) == 2
    back = buf["a0"]  # loaded from disk, and now the most recent
    np.testing.assert_array_equal(back, arrays["a0"])
    assert back.flags.writeable
    assert "a0" in buf.fast and "a2" in buf.slow
    del buf["a1"]
    assert "a1" not in buf and len(list(tmp_path.iterdir())) == 1
    assert sorted(buf) == ["a0", "a2", "a3", "a4"]
    buf.close()


def test_unpicklable_values_stay_in_memory(tmp_path):
    import threading
    buf = SpillBuffer(target=1, directory=str(tmp_path))
    buf["lock"] = threading.Lock()
    buf["other"] = b"x" * 100
    assert "lock" in buf.fast


def test_memory_sizes_parse():
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory("512 MiB") == 512 * 2**20
    assert parse_memory(1e9) == 10**9
    with pytest.raises(ValueError, match="memory size"):
        parse_memory("lots")


def make_block(i, mb):
    return np.full(mb * 2**20 // 8, float(i))


def block_sum(block):
    return float(block.sum())


def test_results_larger_than_memory_spill_and_complete():
    with LocalCluster(n_workers=2, memory_limit="250MiB") as cluster, Client(cluster) as client:
        blocks = client.map(make_block, range(24), mb=20)  # 480 MiB of results, 500 MiB of limits
        sums = client.map(block_sum, blocks)
        expected = [float(i) * (20 * 2**20 // 8) for i in range(24)]
        assert client.gather(sums) == expected
        spilled = client.run(lambda distml_worker: distml_worker.data.spilled_bytes)
        assert len(spilled) == 2 and sum(spilled.values()) > 100 * 2**20
        # every block is still available, from memory or disk
        assert client.gather(client.map(block_sum, blocks)) == expected


def hog(mb):
    import time
    block = np.ones(mb * 2**20 // 8)  # touched, so resident
    time.sleep(5)
    return float(block.sum())


def test_task_past_the_memory_limit_fails_clearly_and_the_cluster_recovers():
    from distml import Config, WorkerDiedError
    config = Config.load(allowed_failures=1)
    with LocalCluster(n_workers=1, memory_limit="300MiB", config=config) as cluster, \
            Client(cluster) as client:
        future = client.submit(hog, 600)
        with pytest.raises(WorkerDiedError, match="memory limit exceeded") as info:
            future.result(timeout=60)
        assert "hog" in str(info.value) and "2 workers that died" in str(info.value)
        cluster.wait_for_workers(1)
        assert cluster.supervisors[0].restarts == 2
        assert client.submit(block_sum, client.submit(make_block, 3, 1)).result() == \
            3.0 * (2**20 // 8)


def test_task_that_ends_its_worker_at_once_fails_instead_of_hanging():
    """It dies before its worker can report that it started; it must still count."""
    import os

    from distml import Config, WorkerDiedError
    config = Config.load(allowed_failures=1)
    with LocalCluster(n_workers=1, config=config) as cluster, Client(cluster) as client:
        with pytest.raises(WorkerDiedError, match="exited with code 3"):
            client.submit(os._exit, 3).result(timeout=60)
        cluster.wait_for_workers(1)
        assert client.submit(block_sum, client.submit(make_block, 2, 1)).result() == \
            2.0 * (2**20 // 8)
