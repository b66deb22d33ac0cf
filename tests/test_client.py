"""The client against a real local cluster: worker processes, sockets, authentication."""

from __future__ import annotations

import operator
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distml import (CancelledError, Client, CycleError, GraphError, SerializationError,
                    TimeoutError, as_completed, wait)
from distml.graph import get_sync

from conftest import wait_until


def inc(x):
    return x + 1


def add(*args):
    return sum(args)


def fail(x):
    raise ValueError(f"bad value {x}")


def slow_identity(x, event_path=None):
    import time
    time.sleep(x)
    return x


def test_submit_and_result(client):
    assert client.submit(inc, 1).result() == 2
    assert client.submit(add, 1, 2, 3).result() == 6
    assert client.submit(lambda x, y=0: x * y, 3, y=4).result() == 12


def test_same_call_same_key_unless_impure(client):
    assert client.submit(inc, 10).key == client.submit(inc, 10).key
    assert client.submit(inc, 10, pure=False).key != client.submit(inc, 10, pure=False).key


def test_map_and_gather_keep_order(client):
    futures = client.map(inc, range(200))
    assert client.gather(futures) == list(range(1, 201))
    assert client.gather({"a": futures[0], "b": [futures[1], futures[2]]}) == \
        {"a": 1, "b": [2, 3]}


def test_futures_as_arguments_move_between_workers(client):
    xs = client.map(inc, range(20))
    total = client.submit(sum, xs)
    assert total.result() == sum(range(1, 21))


def test_raw_dask_graph_runs_as_is(client):
    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y", (inc, 10)), ("w", 0): (sum, ["x", "y"])}
    assert client.get(dsk, "z") == 1 + 2 + 11
    assert client.get(dsk, [("w", 0), ["x", "y"]]) == [3, [1, 2]]


def test_graph_errors_are_clear(client):
    with pytest.raises(CycleError, match="'a'"):
        client.get({"a": (inc, "b"), "b": (inc, "a")}, "a")
    with pytest.raises(GraphError, match="nope"):
        client.get({"a": 1}, "nope")


def test_task_exception_is_raised_with_remote_traceback(client):
    future = client.submit(fail, 3)
    with pytest.raises(ValueError, match="bad value 3") as info:
        future.result()
    assert "fail" in str(info.value.__cause__)  # the worker's traceback, naming the function
    assert isinstance(future.exception(), ValueError)
    assert "raise ValueError" in future.traceback()
    assert future.status == "error"


def test_failure_propagates_to_dependents(client):
    bad = client.submit(fail, 1)
    after = client.submit(inc, bad)
    with pytest.raises(ValueError, match="bad value 1"):
        after.result()


def test_unpicklable_function_is_refused_locally(client):
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="lock"):
        client.submit(lambda: lock)


def test_result_timeout(client):
    future = client.submit(slow_identity, 2, pure=False)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.05)
    future.cancel()


def test_cancel(client):
    future = client.submit(slow_identity, 5, pure=False)
    future.cancel()
    with pytest.raises(CancelledError):
        future.result(timeout=10)


def test_wait_and_as_completed(client):
    futures = client.map(inc, range(10))
    done, not_done = wait(futures)
    assert len(done) == 10 and not not_done
    seen = sorted(f.result() for f in as_completed(client.map(inc, range(10, 20))))
    assert seen == list(range(11, 21))
    pairs = list(as_completed(client.map(inc, range(3)), with_results=True))
    assert sorted(v for _, v in pairs) == [1, 2, 3]


def test_done_callback(client):
    seen = threading.Event()
    client.submit(inc, 41).add_done_callback(lambda f: seen.set())
    assert seen.wait(10)


def test_scatter_and_broadcast(client, cluster):
    data = np.arange(1_000_000, dtype="f8")
    [future] = client.scatter([data])
    assert client.submit(np.sum, future).result() == data.sum()
    shared = client.scatter({"weights": data}, broadcast=True)["weights"]
    holders = client.who_has([shared])[shared.key]
    assert sorted(holders) == sorted(cluster.workers)
    back = shared.result()
    assert np.array_equal(back, data)


def test_large_array_round_trip(client):
    data = np.random.default_rng(0).standard_normal((2000, 5000))  # 80 MB
    future = client.scatter(data)
    result = client.submit(lambda a: a * 2, future).result()
    assert np.array_equal(result, data * 2)


def test_run_on_every_worker(client, cluster):
    import os
    pids = client.run(os.getpid)
    assert sorted(pids) == sorted(cluster.workers)
    assert len(set(pids.values())) == 2
    with pytest.raises(ZeroDivisionError):
        client.run(operator.truediv, 1, 0)


def test_releasing_futures_releases_cluster_data(client, cluster):
    futures = client.map(inc, range(50), pure=False)
    client.gather(futures)
    assert cluster.scheduler.state.tasks
    del futures
    wait_until(lambda: not cluster.scheduler.state.tasks, what=lambda: "keys released")


def test_intermediates_released_as_soon_as_possible(client, cluster):
    dsk = {("x", i): (inc, i) for i in range(10)}
    dsk["total"] = (sum, [("x", i) for i in range(10)])
    assert client.get(dsk, "total") == sum(range(1, 11))
    wait_until(lambda: not cluster.scheduler.state.tasks, what=lambda: "graph released")


def test_retry_and_retries(client):
    def flaky(path):
        import os
        if not os.path.exists(path):
            open(path, "w").close()
            raise RuntimeError("first attempt fails")
        return "ok"

    import tempfile
    path = tempfile.mktemp()
    assert client.submit(flaky, path, retries=1).result() == "ok"
    path2 = tempfile.mktemp()
    f = client.submit(flaky, path2)
    with pytest.raises(RuntimeError):
        f.result()
    f.retry()
    assert f.result() == "ok"


def test_story_tells_a_keys_history(client):
    future = client.submit(inc, 99)
    future.result()
    states = [(start, finish) for _, start, finish, _ in client.story(future)]
    assert ("processing", "memory") in states


def test_client_refuses_wrong_secret(cluster):
    from distml import AuthenticationError
    with pytest.raises(AuthenticationError):
        Client(cluster.scheduler_address, secret="not-the-secret", timeout=5)


class Pair:
    """A minimal collection: two keys and how to finish them, as arrays will do."""

    def __init__(self, dsk, keys):
        self.dsk, self.keys = dsk, keys

    def __distml_graph__(self):
        return self.dsk

    def __distml_keys__(self):
        return self.keys

    @staticmethod
    def __distml_finalize__(values):
        return tuple(values)

    def __distml_persist__(self, futures):
        return Pair({k: f for k, f in zip(self.keys, futures)}, self.keys)


def test_compute_and_persist_collections(client):
    pair = Pair({"a": (inc, 1), "b": (inc, "a")}, ["a", "b"])
    assert client.compute(pair, sync=True) == (2, 3)
    assert client.compute(pair).result() == (2, 3)
    persisted = client.persist(pair)
    assert client.gather(list(persisted.dsk.values())) == [2, 3]
    assert client.compute(persisted, sync=True) == (2, 3)  # runs from the held results
    derived = Pair({**persisted.dsk, "c": (add, "a", "b", persisted.dsk["b"])}, ["c"])
    assert client.compute(derived, sync=True) == (2 + 3 + 3,)


@st.composite
def dags(draw):
    n = draw(st.integers(1, 30))
    dsk = {}
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        dsk[f"k{i}"] = (add, i, *[f"k{d}" for d in deps])
    return dsk


@settings(derandomize=True, max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dsk=dags())
def test_random_dags_match_sequential_evaluation(client, dsk):
    keys = sorted(dsk)
    assert client.get(dsk, keys) == get_sync(dsk, keys)


def test_futures_collected_by_gc_inside_the_client_do_not_deadlock(client):
    """A future in a reference cycle dies when the collector runs, which may be in the middle
    of the client creating another future (this deadlocked once)."""
    import gc

    class Cycle:
        def __init__(self, future):
            self.future, self.me = future, self

    threshold = gc.get_threshold()
    gc.set_threshold(1)  # collect at almost every allocation
    try:
        for i in range(200):
            Cycle(client.submit(inc, i, pure=False))
        assert client.gather(client.map(inc, range(50))) == list(range(1, 51))
    finally:
        gc.set_threshold(*threshold)
        gc.collect()


def nap(x, delay):
    import time
    time.sleep(delay)
    return x


def test_heartbeats_count_only_tasks_in_threads(cluster, client):
    """A worker queues a task ahead of each thread; it is not running until a thread takes it."""
    futures = client.map(nap, range(8), delay=0.4)
    workers = cluster.scheduler.state.workers.values()
    seen = []

    def sampled() -> bool:
        seen.extend(ws.metrics.get("executing", 0) for ws in workers)
        return any(seen)

    wait_until(sampled, timeout=20, what=lambda: f"a heartbeat while tasks run: {seen}")
    assert max(seen) <= 1  # one thread per worker
    client.gather(futures)
    del futures


def test_scatter_right_after_releasing_the_same_data_keeps_it(client):
    """Releasing a scattered key makes the scheduler free it on its worker; scattering the same
    data again at once puts a new copy there, which that free (overtaken by the direct put)
    must not drop: each iteration would otherwise risk a task waiting forever for it."""
    data = np.arange(100_000.0)
    worker = sorted(client.nthreads())[:1]
    for _ in range(200):
        first = client.scatter(data, workers=worker)
        del first
        again = client.scatter(data, workers=worker)
        assert client.submit(np.sum, again).result(timeout=10) == data.sum()
        del again
