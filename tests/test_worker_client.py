"""Tasks that submit tasks and wait for them: the worker's client, secede/rejoin in the worker's
and the scheduler's state machines, and interruption of running tasks that nobody wants."""

from __future__ import annotations

import os
import time

import pytest

import distml
from distml import Client
from distml.config import Config
from distml.scheduler.state import SchedulerState
from distml.worker.context import TaskInterrupted
from distml.worker.state import Execute, Interrupt, SendToScheduler, WorkerStateMachine
from conftest import wait_until

A = "tcp://a:1"
C = "client-1"


def sent(out, op):
    return [i.msg for i in out if isinstance(i, SendToScheduler) and i.msg["op"] == op]


def executes(out):
    return [i.key for i in out if isinstance(i, Execute)]


# ---------------------------------------------------------------------- worker state machine
def test_seceded_task_frees_its_slot_and_tells_the_scheduler():
    w = WorkerStateMachine(nthreads=1, address=A)
    assert executes(w.compute("parent", b"", [0, 0], {})) == ["parent"]
    assert executes(w.compute("child", b"", [0, 1], {})) == []  # the one thread is taken
    out = w.secede("parent")
    assert sent(out, "secede") == [{"op": "secede", "key": "parent"}]
    assert executes(out) == ["child"]
    assert w.secede("parent") == []  # once only
    out = w.rejoin("parent")
    assert sent(out, "rejoin") == [{"op": "rejoin", "key": "parent"}]
    assert w.executing == {"parent", "child"} and not w.seceded
    assert executes(w.compute("later", b"", [0, 2], {})) == []  # over the limit until one ends
    assert executes(w.task_done("child", 8, 0.1)) == []
    assert executes(w.task_done("parent", 8, 0.1)) == ["later"]


def test_seceded_task_that_finishes_without_rejoining_is_forgotten_cleanly():
    w = WorkerStateMachine(nthreads=1, address=A)
    w.compute("parent", b"", [0, 0], {})
    w.secede("parent")
    out = w.task_done("parent", 8, 0.1)
    assert sent(out, "task-finished")[0]["key"] == "parent"
    assert not w.seceded and not w.executing


def test_freeing_a_running_task_interrupts_it_and_a_rewanted_one_runs_again():
    w = WorkerStateMachine(nthreads=1, address=A)
    w.compute("t", b"", [0, 0], {})
    out = w.free(["t"])
    assert [i.key for i in out if isinstance(i, Interrupt)] == ["t"]
    assert executes(w.task_interrupted("t")) == [] and "t" not in w.tasks
    w.compute("u", b"", [0, 0], {})
    w.free(["u"])
    w.compute("u", b"", [0, 0], {})  # wanted again before the interruption landed
    assert executes(w.task_interrupted("u")) == ["u"]


# ---------------------------------------------------------------------- scheduler state machine
def spec(prio=0):
    return {"payload": [b"opaque"], "deps": [], "prio": prio}


def test_scheduler_places_work_on_the_slot_a_seceded_task_left():
    s = SchedulerState(Config())
    s.add_client(C)
    s.add_worker(A, 1)
    out = s.update_graph(C, {"parent": spec()}, ["parent"])
    assert [m["key"] for m in out[A]] == ["parent"]
    out = s.update_graph(C, {"child": spec()}, ["child"])
    assert A not in out  # queued: the one thread is busy
    out = s.task_seceded(A, "parent")
    assert [m["key"] for m in out[A] if m["op"] == "compute"] == ["child"]
    assert s.workers[A].occupancy == s.workers[A].processing[s.tasks["child"]]
    s.task_rejoined(A, "parent")
    assert s.workers[A].busy_threads() == 2
    s.task_finished(A, "parent", 8, 30.0)
    assert "parent" not in s.durations  # waiting time is not the kind's duration
    assert not s.workers[A].long_running


def test_scheduler_ignores_secede_of_a_task_it_did_not_place_there():
    s = SchedulerState(Config())
    s.add_client(C)
    s.add_worker(A, 1)
    assert s.task_seceded(A, "unknown") == {}
    assert not s.workers[A].long_running


# ---------------------------------------------------------------------- on a real cluster
def fib(n):
    if n < 2:
        return n
    client = distml.get_client()
    a = client.submit(fib, n - 1, pure=False)
    b = client.submit(fib, n - 2, pure=False)
    distml.secede()
    left, right = client.gather([a, b])
    distml.rejoin()
    return left + right


def test_recursive_tasks_on_one_thread_workers_do_not_deadlock(client):
    assert client.submit(fib, 10).result(timeout=90) == 55


def sum_of_squares(n):
    with distml.worker_client() as inner:
        futures = inner.map(pow, range(n), [2] * n)
        return sum(inner.gather(futures))


def test_worker_client_block(client):
    results = client.gather(client.map(sum_of_squares, [10, 20, 30]), timeout=60)
    assert results == [sum(i * i for i in range(n)) for n in (10, 20, 30)]


def worker_client_identity(_):
    return id(distml.get_client()), os.getpid()


def test_one_client_per_worker_process(client):
    pairs = client.gather(client.map(worker_client_identity, range(8)), timeout=30)
    by_process: dict[int, set[int]] = {}
    for client_id, pid in pairs:
        by_process.setdefault(pid, set()).add(client_id)
    assert all(len(ids) == 1 for ids in by_process.values())


def test_context_calls_outside_a_task_are_refused():
    with pytest.raises(ValueError, match="inside a task"):
        distml.secede()
    with pytest.raises(ValueError, match="inside a task"):
        distml.get_worker()


def spin_until_interrupted(marker: str) -> str:
    open(marker, "w").close()
    try:
        while True:
            time.sleep(0.001)
    except TaskInterrupted:
        open(marker + ".interrupted", "w").close()
        raise


def test_cancel_interrupts_a_running_task(client, tmp_path):
    marker = str(tmp_path / "running")
    future = client.submit(spin_until_interrupted, marker)
    wait_until(lambda: os.path.exists(marker), timeout=30)
    future.cancel()
    wait_until(lambda: os.path.exists(marker + ".interrupted"), timeout=30,
               what=lambda: "the cancelled task to be interrupted")
    # the worker's thread is back in the pool: new work runs
    assert client.submit(pow, 3, 2).result(timeout=30) == 9

