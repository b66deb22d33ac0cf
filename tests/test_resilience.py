"""Lost workers in real processes: what comes back from the scheduler's copies, and what fails
instead of waiting forever."""

from __future__ import annotations

import os
import time
from pathlib import Path

from distml import Client, LocalCluster

from conftest import wait_until


def leaf(i: int, log: str) -> int:
    with open(log, "a") as f:  # one line per execution, whichever process runs it
        f.write(f"{i}\n")
    return i * i


def total(parts: list[int]) -> int:
    return sum(parts)


def wait_for_file(path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.01)
    return 1


def add(a: int, b: int) -> int:
    return a + b


def test_small_partial_result_of_a_killed_worker_is_restored_not_recomputed(tmp_path: Path):
    log, gate_file = str(tmp_path / "leaves.log"), str(tmp_path / "open")
    with LocalCluster(n_workers=1, threads_per_worker=2) as cluster, \
            Client(cluster) as client:
        state = cluster.scheduler.state

        def state_of(key: str) -> str | None:
            ts = state.tasks.get(key)
            return None if ts is None else ts.state

        leaves = [client.submit(leaf, i, log, pure=False) for i in range(4)]
        partial = client.submit(total, leaves)
        gate = client.submit(wait_for_file, gate_file)
        final = client.submit(add, partial, gate)
        leaf_keys = [f.key for f in leaves]
        del leaves  # the partial sum consumed them: only lineage is left
        wait_until(lambda: state_of(partial.key) == "memory"
                   and all(state_of(k) == "released" for k in leaf_keys),
                   what=lambda: f"partial sum in memory, leaves released: {state.task_counts()}")
        cluster.add_worker()
        first = cluster.supervisors[0]
        first.kill()  # holds the partial sum, and runs the gate
        wait_until(lambda: first.address not in state.workers, what=lambda: "worker removed")
        Path(gate_file).touch()
        assert final.result(timeout=60) == 0 + 1 + 4 + 9 + 1
        assert sorted(Path(log).read_text().split()) == ["0", "1", "2", "3"]  # each ran once
        story = client.story(partial)
        assert any(start == "released" and finish == "memory" and "remove_worker" in cause
                   for _, start, finish, cause in story), story
        assert not any("remove_worker" in cause for *_, cause in client.story(*leaf_keys))
