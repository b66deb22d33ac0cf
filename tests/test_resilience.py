"""Lost workers in real processes: what comes back from the scheduler's copies, and what fails
instead of waiting forever."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from distml import Client, Config, LocalCluster, NoWorkersError, WorkerDiedError

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


def end_process() -> None:
    os._exit(1)


def test_futures_fail_instead_of_waiting_when_every_nanny_gives_up():
    config = Config.load(allowed_failures=10)  # the nanny gives up first (3 quick deaths)
    with LocalCluster(n_workers=1, config=config) as cluster, Client(cluster) as client:
        doomed = client.submit(end_process, pure=False)
        behind = client.submit(add, doomed, 1)
        innocent = client.submit(add, 1, 2)
        for future in (doomed, behind):
            with pytest.raises(NoWorkersError, match="gave up restarting") as info:
                future.result(timeout=60)
            assert "exited with code 1" in str(info.value)
        assert isinstance(info.value, WorkerDiedError)  # caught with the other worker deaths
        # the innocent task either ran before the last death or failed the same way
        assert innocent.status in ("finished", "error")
        if innocent.status == "error":
            assert isinstance(innocent.exception(), NoWorkersError)
        assert cluster.supervisors[0].restarts == 2
        with pytest.raises(NoWorkersError):  # submitted while no worker can come: fails at once
            client.submit(add, 2, 2).result(timeout=30)
        cluster.add_worker()  # a worker joins again: work runs
        assert client.submit(add, 3, 3).result(timeout=30) == 6


def test_no_workers_timeout_fails_waiting_futures():
    config = Config.load(no_workers_timeout=0.5)
    with LocalCluster(n_workers=0, config=config) as cluster, Client(cluster) as client:
        future = client.submit(add, 1, 1)
        with pytest.raises(NoWorkersError, match="no worker joined the scheduler within 0.5 s"):
            future.result(timeout=30)
        cluster.add_worker()
        assert client.submit(add, 1, 2).result(timeout=30) == 3


def test_a_killed_worker_is_replaced_by_the_nannys_spare_process(tmp_path: Path):
    import psutil

    config = Config.load(local_directory=str(tmp_path))
    with LocalCluster(n_workers=1, threads_per_worker=1, config=config) as cluster, \
            Client(cluster) as client:
        nanny = cluster.supervisors[0]
        wait_until(lambda: nanny._spare is not None, timeout=30, what=lambda: "a spare")
        spare_pid, first = nanny._spare[0].pid, nanny.address
        assert first not in [None, ""] and nanny.process.pid != spare_pid
        nanny.kill()
        wait_until(lambda: nanny.address != first and nanny.address in cluster.workers,
                   timeout=30, what=lambda: "the replacement")
        assert nanny.process.pid == spare_pid  # the spare joined; it did not start from scratch
        assert client.submit(add, 1, 2).result(timeout=30) == 3
        wait_until(lambda: nanny._spare is not None, timeout=30, what=lambda: "a new spare")
        pids = [nanny.process.pid, nanny._spare[0].pid]
    for pid in pids:  # the worker and the spare end with the cluster, and so do their folders
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert list(tmp_path.iterdir()) == []
