"""Shared fixtures: real clusters in real processes on loopback."""

from __future__ import annotations

import gc
import time

import pytest

from distml import Client, LocalCluster, default_client


@pytest.fixture(scope="module")
def cluster():
    """Two single-thread worker processes, shared by a test module."""
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB") as c:
        yield c


@pytest.fixture
def client(cluster):
    """A client of the shared cluster; checks that the test left no keys behind."""
    with Client(cluster) as c:
        yield c
        gc.collect()
    wait_until(lambda: not cluster.scheduler.state.tasks, timeout=10,
               what=lambda: f"keys left on the cluster: {list(cluster.scheduler.state.tasks)[:5]}")


@pytest.fixture(scope="module", params=["threaded", "cluster"])
def backend(request):
    """Run each test of a module in-process (no client) and on a 2-worker cluster."""
    if request.param == "threaded":
        assert default_client() is None
        yield None
    else:
        with Client(n_workers=2, threads_per_worker=1) as c:
            yield c


def wait_until(predicate, timeout: float = 10.0, what=lambda: "condition") -> None:
    """Poll a condition that has no event to await (state in another thread or process)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what()}")
        time.sleep(0.01)
