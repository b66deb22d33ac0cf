"""The scheduler's state machine on its own: events in, messages out, no network."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distml.config import Config
from distml.scheduler.state import (MEMORY, PROCESSING, QUEUED, RELEASED, WAITING,
                                    SchedulerState)

C = "client-1"
A = "tcp://a:1"
B = "tcp://b:1"


def spec(*deps, prio=0):
    return {"payload": [b"opaque"], "deps": list(deps), "prio": prio}


def ops(out, recipient, op):
    return [m for m in out.get(recipient, []) if m["op"] == op]


def computes(out, recipient):
    return [m["key"] for m in ops(out, recipient, "compute")]


def new_state(*workers, nthreads=1, **config):
    s = SchedulerState(Config(**config))
    s.add_client(C)
    for w in workers:
        s.add_worker(w, nthreads)
    return s


def test_chain_runs_in_order_and_reports_to_client():
    s = new_state(A)
    out = s.update_graph(C, {"x": spec(), "y": spec("x"), "z": spec("y")}, ["z"])
    assert computes(out, A) == ["x"]
    out = s.task_finished(A, "x", 8, 0.001)
    assert computes(out, A) == ["y"]
    assert ops(out, A, "compute")[0]["deps"] == {"x": [A]}
    out = s.task_finished(A, "y", 8, 0.001)
    assert computes(out, A) == ["z"]
    assert ops(out, A, "free") == [{"op": "free", "keys": ["x"]}]  # x no longer needed
    out = s.task_finished(A, "z", 8, 0.001)
    done = ops(out, C, "key-done")
    assert done == [{"op": "key-done", "key": "z", "nbytes": 8, "workers": [A]}]
    assert {k: ts.state for k, ts in s.tasks.items()} == {"x": RELEASED, "y": RELEASED,
                                                          "z": MEMORY}


def test_release_forgets_everything_and_frees_workers():
    s = new_state(A)
    s.update_graph(C, {"x": spec(), "y": spec("x")}, ["y"])
    s.task_finished(A, "x", 8, 0.001)
    s.task_finished(A, "y", 8, 0.001)
    out = s.release_keys(C, ["y"])
    assert ops(out, A, "free") == [{"op": "free", "keys": ["y"]}]
    assert s.tasks == {}
    assert s.workers[A].has_what == set() and s.workers[A].nbytes == 0


def test_root_tasks_are_withheld_until_durations_are_known():
    s = new_state(A)
    out = s.update_graph(C, {f"t-{i}": spec(prio=i) for i in range(100)},
                         [f"t-{i}" for i in range(100)])
    assert computes(out, A) == ["t-0"]  # unknown duration: one task per thread
    assert sum(ts.state == QUEUED for ts in s.tasks.values()) == 99
    out = s.task_finished(A, "t-0", 8, 1e-5)
    sent = computes(out, A)
    assert len(sent) > 10  # short tasks: the worker gets a backlog
    assert sent == sorted(sent, key=lambda k: int(k.split("-")[1]))  # priority order


def test_dependent_goes_where_its_input_is():
    s = new_state(A, B)
    s.update_graph(C, {"big": spec()}, ["big"])
    holder = next(iter(s.workers[w] for w in (A, B) if s.workers[w].processing)).address
    s.task_finished(holder, "big", 10**9, 0.01)
    out = s.update_graph(C, {"use": spec("big")}, ["use"])
    assert computes(out, holder) == ["use"]


def test_error_propagates_to_dependents():
    s = new_state(A)
    s.update_graph(C, {"x": spec(), "y": spec("x"), "z": spec("y")}, ["z"])
    out = s.task_erred(A, "x", [b"exc"], [b"tb"], "ZeroDivisionError: boom")
    erred = ops(out, C, "key-erred")
    assert len(erred) == 1 and erred[0]["key"] == "z" and erred[0]["erred_key"] == "x"
    assert erred[0]["exception"] == [b"exc"]
    assert {ts.state for ts in s.tasks.values()} == {"erred"}


def test_retries_run_a_failed_task_again():
    s = new_state(A)
    t = spec()
    t["retries"] = 1
    s.update_graph(C, {"x": t}, ["x"])
    out = s.task_erred(A, "x", None, None, "flaky")
    assert computes(out, A) == ["x"] and not ops(out, C, "key-erred")
    out = s.task_erred(A, "x", None, None, "flaky again")
    assert ops(out, C, "key-erred")


def test_retry_after_error():
    s = new_state(A)
    s.update_graph(C, {"x": spec(), "y": spec("x")}, ["y"])
    s.task_erred(A, "x", None, None, "boom")
    out = s.retry(C, ["y"])
    assert computes(out, A) == ["x"]
    s.task_finished(A, "x", 1, 0.001)
    out = s.task_finished(A, "y", 1, 0.001)
    assert ops(out, C, "key-done")


def test_missing_dependency_errs_with_its_name():
    s = new_state(A)
    out = s.update_graph(C, {"y": spec("nope")}, ["y"])
    (msg,) = ops(out, C, "key-erred")
    assert "'nope'" in msg["text"]


def test_lost_worker_reschedules_and_recomputes():
    s = new_state(A, B)
    s.update_graph(C, {"x": spec(), "y": spec(), "z": spec("x", "y")}, ["z"])
    where = {ts.key: ts.processing_on.address for ts in s.tasks.values() if ts.processing_on}
    s.task_finished(where["x"], "x", 8, 0.001)
    dead = where["x"]
    alive = B if dead == A else A
    s.remove_worker(dead, "killed")
    assert dead not in s.workers
    ran = []
    while s.tasks["z"].state != MEMORY:
        (ts,) = s.workers[alive].processing  # one thread, and unknown durations: one at a time
        ran.append(ts.key)
        s.task_finished(alive, ts.key, 8, 0.001)
    assert "x" in ran and ran[-1] == "z"  # x lived only on the dead worker: recomputed


def test_lost_result_the_client_already_holds_is_not_recomputed_until_needed():
    s = new_state(A)
    s.update_graph(C, {"x": spec(), "big": spec()}, ["x", "big"])
    s.task_finished(A, "x", 8, 0.001, value=b"inline")  # small: the client got the bytes
    s.task_finished(A, "big", 10**6, 0.001)  # large: the client would fetch it from A
    s.add_worker(B, 1)
    out = s.remove_worker(A, "killed")
    assert [m["key"] for m in ops(out, C, "key-recomputing")] == ["big"]
    assert computes(out, B) == ["big"]
    assert s.tasks["x"].state == RELEASED
    out = s.update_graph(C, {"y": spec("x")}, ["y"])  # now a task needs x on a worker again
    assert computes(out, B) == ["x"]
    out = s.task_finished(B, "x", 8, 0.001, value=b"inline")
    assert computes(out, B) == ["y"]


def test_poison_task_fails_after_allowed_failures():
    s = new_state(A, allowed_failures=2)
    s.update_graph(C, {"x": spec()}, ["x"])
    for i in range(3):
        worker = f"tcp://w{i}:1"
        s.add_worker(worker, 1)
        victim = s.tasks["x"].processing_on.address
        s.task_started(victim, ["x"])
        out = s.remove_worker(victim, "SIGKILL")
    (msg,) = ops(out, C, "key-erred")
    assert "died" in msg["text"] and "SIGKILL" in msg["text"]


def test_only_tasks_that_started_count_against_a_dead_worker():
    s = new_state(A, allowed_failures=0)
    s.durations["t"] = 1e-4  # short tasks: several are queued on the worker at once
    s.update_graph(C, {f"t-{i}": spec() for i in range(3)}, [f"t-{i}" for i in range(3)])
    s.task_started(A, ["t-0"])
    s.add_worker(B, 1)
    out = s.remove_worker(A, "killed")
    erred = [m["key"] for m in ops(out, C, "key-erred")]
    assert erred == ["t-0"]  # the two that only waited in A's queue are run again elsewhere
    assert sorted(computes(out, B)) == ["t-1", "t-2"]


def test_a_worker_that_dies_before_reporting_a_start_blames_the_head_of_its_queue():
    """A task that ends its process at once never gets to say it started."""
    s = new_state(A, allowed_failures=0)
    s.durations["t"] = 1e-4
    s.update_graph(C, {f"t-{i}": spec(prio=i) for i in range(3)}, [f"t-{i}" for i in range(3)])
    s.add_worker(B, 1)
    out = s.remove_worker(A, "exit code 1")
    assert [m["key"] for m in ops(out, C, "key-erred")] == ["t-0"]  # first in A's queue
    assert sorted(computes(out, B)) == ["t-1", "t-2"]


def test_scattered_data_is_confirmed_to_its_holders():
    s = new_state(A, B)
    out = s.scatter(C, {"x": [A, B], "y": [A]}, {"x": 8, "y": 8}, "put-7")
    assert ops(out, A, "confirm") == [{"op": "confirm", "keys": ["x", "y"], "put": "put-7"}]
    assert ops(out, B, "confirm") == [{"op": "confirm", "keys": ["x"], "put": "put-7"}]


def test_lost_scattered_data_is_reported_not_waited_for():
    s = new_state(A)
    s.scatter(C, {"d": [A]}, {"d": 8})
    out = s.remove_worker(A, "killed")
    (msg,) = ops(out, C, "key-erred")
    assert "scattered" in msg["text"]


def test_cancel_stops_processing_work():
    s = new_state(A)
    s.update_graph(C, {"x": spec()}, ["x"])
    out = s.cancel(C, ["x"])
    assert ops(out, C, "key-cancelled") and ops(out, A, "free")
    assert s.tasks == {} and not s.workers[A].processing


def test_client_loss_releases_its_keys():
    s = new_state(A)
    s.update_graph(C, {"x": spec()}, ["x"])
    s.task_finished(A, "x", 8, 0.001)
    out = s.remove_client(C)
    assert ops(out, A, "free") and s.tasks == {}


def test_stealing_moves_unstarted_work_to_an_idle_worker():
    s = new_state(A, B)
    s.durations["slow"] = 1.0
    s.update_graph(C, {"seed": spec()}, ["seed"])
    holder = s.tasks["seed"].processing_on.address
    s.task_finished(holder, "seed", 1, 1.0)
    other = B if holder == A else A
    s.remove_worker(other)
    s.update_graph(C, {f"slow-{i}": spec("seed") for i in range(6)},
                   [f"slow-{i}" for i in range(6)])
    s.add_worker(other, 1)
    out = s.balance()
    stolen = [m["key"] for m in ops(out, holder, "steal")]
    assert stolen
    out = s.steal_response(holder, stolen[0], True)
    assert computes(out, other) == [stolen[0]]
    out = s.steal_response(holder, stolen[-1], False) if len(stolen) > 1 else {}
    assert all(s.tasks[k].state == PROCESSING for k in stolen)



def _backlog_and_other():
    """A holds ``seed`` and runs 4 one-second tasks over it; B, which joined after, runs one
    short task of its own (nothing to steal yet: B is busy)."""
    s = new_state(A)
    s.durations["slow"] = 1.0
    s.update_graph(C, {"seed": spec()}, ["seed"])
    s.task_finished(A, "seed", 1, 0.01)
    s.update_graph(C, {f"slow-{i}": spec("seed") for i in range(4)},
                   [f"slow-{i}" for i in range(4)])
    s.add_worker(B, 1)
    s.update_graph(C, {"own": spec()}, ["own"])
    assert s.tasks["own"].processing_on is s.workers[B]
    return s


def test_a_worker_that_runs_out_of_work_steals_at_once():
    s = _backlog_and_other()
    out = s.task_finished(B, "own", 8, 0.01)  # no balance tick: the finish itself steals
    stolen = [m["key"] for m in ops(out, A, "steal")]
    assert len(stolen) == 2  # half of A's four: both end after two seconds
    for key in stolen:
        assert computes(s.steal_response(A, key, True), B) == [key]
    assert len(s.workers[A].processing) == len(s.workers[B].processing) == 2


def test_a_started_task_is_not_asked_for_and_does_not_hide_a_queued_one():
    """B started a task of a newer graph (lower priority), then got one of an older graph
    queued behind it: when A runs out of work, the queued one is asked for, not the started
    one (which B would refuse to give up)."""
    s = new_state(A, B)
    s.durations.update({"dep": 0.001, "slow": 0.02, "late": 0.02, "own": 0.04})
    s.update_graph(C, {"own": spec()}, ["own"])
    s.update_graph(C, {"dep": spec(), "slow-1": spec("dep")}, ["slow-1"])
    s.update_graph(C, {"late": spec()}, ["late"])
    assert s.tasks["own"].processing_on is s.workers[A]
    assert s.tasks["dep"].processing_on is s.tasks["late"].processing_on is s.workers[B]
    s.task_started(B, ["dep", "late"])
    s.task_finished(B, "dep", 8, 0.001)
    assert s.tasks["slow-1"].processing_on is s.workers[B]
    assert s.tasks["slow-1"].priority < s.tasks["late"].priority
    out = s.task_finished(A, "own", 8, 0.04)
    assert [m["key"] for m in ops(out, B, "steal")] == ["slow-1"]


def test_steals_in_flight_count_for_the_thief():
    s = _backlog_and_other()
    assert len(ops(s.task_finished(B, "own", 8, 0.01), A, "steal")) == 2
    assert ops(s.balance(), A, "steal") == []  # the tasks asked for already fill B

MB40 = 40 * 10**6


def _holder_with_backlog(block_bytes, backlog, duration=None):
    """Worker A holds ``block`` and has ``backlog`` tasks over it queued (of a kind measured at
    ``duration`` seconds, or never measured); B joins idle afterwards."""
    s = new_state(A)
    s.update_graph(C, {"block": spec()}, ["block"])
    s.task_finished(A, "block", block_bytes, 0.01)
    kind = "fit" if duration is None else "busy"
    if duration is not None:
        s.durations[kind] = duration
    s.update_graph(C, {f"{kind}-{i}": spec("block") for i in range(backlog)},
                   [f"{kind}-{i}" for i in range(backlog)])
    s.add_worker(B, 1)
    return s


def _placed_on(s, key):
    out = s.update_graph(C, {key: spec("block")}, [key])
    return [w for w in (A, B) if key in computes(out, w)]


def test_alias_of_a_large_block_stays_on_the_busier_holder():
    # Moving 40 MB (0.4 s at 100 MB/s) does not pay for a 0.6 s measured wait ...
    assert _placed_on(_holder_with_backlog(MB40, 1, duration=0.6), "alias-1") == [A]
    # ... nor for a backlog whose length is only the default guess for an unknown kind.
    assert _placed_on(_holder_with_backlog(MB40, 4), "alias-2") == [A]


def test_large_block_moves_for_a_long_measured_backlog():
    assert _placed_on(_holder_with_backlog(MB40, 5, duration=1.0), "alias-1") == [B]


def test_task_with_tiny_input_goes_to_the_idle_worker():
    assert _placed_on(_holder_with_backlog(1000, 1, duration=0.6), "use-1") == [B]
    assert _placed_on(_holder_with_backlog(1000, 4), "use-2") == [B]


def test_placement_ties_break_by_address():
    s = new_state(B, A)  # A joins last but sorts first
    s.scatter(C, {"x": [A, B]}, {"x": 10})
    out = s.update_graph(C, {"use": spec("x")}, ["use"])
    assert computes(out, A) == ["use"]


def test_first_measurement_replaces_the_guess_for_queued_tasks():
    s = _holder_with_backlog(MB40, 4)
    assert s.workers[A].occupancy == 4 * Config().unknown_task_duration
    s.task_finished(A, "fit-0", 8, 0.01)
    assert abs(s.workers[A].occupancy - 3 * s.durations["fit"]) < 1e-12
    assert set(s.workers[A].processing.values()) == {s.durations["fit"]}


def test_tasks_over_large_inputs_are_not_stolen():
    s = _holder_with_backlog(MB40, 6, duration=1.0)  # 0.4 s transfer for 1 s of work
    assert s.workers[A].busy_threads() == 6
    assert ops(s.balance(), A, "steal") == []
    s = _holder_with_backlog(MB40, 6)  # duration unknown: no evidence that moving pays
    assert ops(s.balance(), A, "steal") == []
    s = _holder_with_backlog(MB40, 6, duration=10.0)  # transfer small against the run time
    assert ops(s.balance(), A, "steal")


def test_bandwidth_must_be_positive():
    with pytest.raises(ValueError, match="transfer_bandwidth"):
        SchedulerState(Config(transfer_bandwidth=0))


def test_story_records_causes():
    s = new_state(A)
    s.update_graph(C, {"x": spec()}, ["x"], stimulus_id="update-1")
    s.task_finished(A, "x", 8, 0.001, stimulus_id="finished-2")
    story = s.story(["x"])
    assert ("x", "processing", "memory", "finished-2") in story
    assert story[0][3] == "update-1"


def test_rejoining_worker_restores_its_keys():
    s = new_state(A)
    s.update_graph(C, {"x": spec(), "y": spec("x")}, ["y"])
    s.task_finished(A, "x", 8, 0.001)
    s.task_finished(A, "y", 8, 0.001)
    s.remove_worker(A, "scheduler lost it")
    out = s.add_worker(A, 1, keys={"y": 8, "stale": 1})
    assert s.tasks["y"].state == MEMORY
    assert not ops(out, A, "free") and s.unclaimed == {"stale": {A: 1}}
    assert not ops(s.sweep_unclaimed(), A, "free")  # kept for one period
    assert ops(s.sweep_unclaimed(), A, "free") == [{"op": "free", "keys": ["stale"]}]
    assert s.unclaimed == {}


def test_scheduler_restart_reclaims_what_workers_kept():
    """A fresh scheduler learns keys from rejoining workers before the client resubmits: only
    what no worker kept is computed again."""
    s = new_state()
    s.add_worker(A, 1, keys={"x": 8})  # x survived on A; y (which needs x) was lost
    s.add_worker(B, 1, keys={"scattered": 4})
    out = s.update_graph(C, {"x": spec(), "y": spec("x")}, ["y", "scattered"])
    assert computes(out, A) + computes(out, B) == ["y"]
    assert ops(out, C, "key-done")[0]["key"] == "scattered"
    assert s.tasks["x"].state == MEMORY and s.unclaimed == {}
    out = s.task_finished(A, "y", 8, 0.01)
    assert ops(out, A, "free") == [{"op": "free", "keys": ["x"]}]  # x no longer needed


# ---------------------------------------------------------------------- copies of small results
def _half_reduced_tree(**config):
    """Leaves a0..a3 on A and b0..b3 on B, summed per worker into sa (on A) and sb (on B),
    which feed ``total``: the leaves were consumed (released) and sb is still being computed
    when A dies holding sa."""
    s = new_state(A, B, **config)
    leaves = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    tasks = {k: spec() for k in leaves}
    tasks.update({"sa": spec(*leaves[:4]), "sb": spec(*leaves[4:]), "total": spec("sa", "sb")})
    s.update_graph(C, tasks, ["total"])
    for ts in list(s.tasks.values()):  # place the leaves by hand, as if measured
        if ts.processing_on is not None:
            s._stop_processing(ts)
            s._transition(ts, QUEUED)
    s._queue.clear()
    for k in leaves:
        s._transition(s.tasks[k], RELEASED)
        s._transition(s.tasks[k], WAITING)
        s._assign(s.tasks[k], s.workers[A if k.startswith("a") else B])
    for k in leaves:
        s.task_finished(A if k.startswith("a") else B, k, 10**6, 0.01)  # large: no copies
    assert s.tasks["sa"].processing_on.address == A and s.tasks["sb"].processing_on.address == B
    s.task_finished(A, "sa", 400, 0.001, value=b"sa-bytes")
    assert all(s.tasks[k].state == RELEASED for k in leaves[:4])  # consumed
    assert s.tasks["total"].state == WAITING
    return s


def test_lost_small_result_is_restored_not_recomputed_with_its_consumed_inputs():
    s = _half_reduced_tree()
    assert s.copies.get("sa") == b"sa-bytes"
    out = s.remove_worker(A, "killed by signal SIGKILL")
    assert ops(out, B, "restore") == [{"op": "restore", "key": "sa", "value": b"sa-bytes",
                                       "nbytes": 400}]
    assert computes(out, B) == []  # neither sa nor the leaves it consumed run again
    assert s.tasks["sa"].state == MEMORY and {w.address for w in s.tasks["sa"].who_has} == {B}
    assert all(s.tasks[f"a{i}"].state == RELEASED for i in range(4))
    assert ops(out, C, "key-recomputing") == []  # the client wants only total
    out = s.task_finished(B, "sb", 400, 0.001, value=b"sb-bytes")
    assert computes(out, B) == ["total"]
    assert ops(out, B, "compute")[0]["deps"] == {"sa": [B], "sb": [B]}
    out = s.task_finished(B, "total", 400, 0.001, value=b"total-bytes")
    assert ops(out, C, "key-done")[0]["value"] == b"total-bytes"
    s.release_keys(C, ["total"])
    assert s.tasks == {} and len(s.copies) == 0


def test_without_copies_a_lost_partial_sum_recomputes_its_subtree():
    s = _half_reduced_tree(result_copies_bytes=0)
    out = s.remove_worker(A, "killed by signal SIGKILL")
    assert ops(out, B, "restore") == []
    assert {k for k, ts in s.tasks.items() if ts.state in (QUEUED, PROCESSING, WAITING)} == \
        {"a0", "a1", "a2", "a3", "sa", "sb", "total"}


def test_a_lost_large_result_recomputes_from_restored_small_inputs():
    s = new_state(A, B)
    s.update_graph(C, {"p": spec(), "big": spec("p"), "use": spec("big")}, ["use"])
    holder = s.tasks["p"].processing_on.address
    s.task_finished(holder, "p", 80, 0.001, value=b"p-bytes")
    assert s.tasks["big"].processing_on.address == holder
    s.task_finished(holder, "big", 10**7, 0.001)  # too big to come along: no copy
    assert s.tasks["p"].state == RELEASED  # consumed, but kept as lineage with its copy
    s.add_worker("tcp://c:1", 1)
    s.task_started(holder, ["use"])
    out = s.remove_worker(holder, "killed")
    restored = {m["key"]: r for r, msgs in out.items() for m in msgs if m["op"] == "restore"}
    assert list(restored) == ["p"]  # big's input comes back from the copy, not recomputed
    assert {r: computes(out, r) for r in out if computes(out, r)} == {restored["p"]: ["big"]}
    assert s.tasks["use"].state == WAITING and s.tasks["p"].state == MEMORY


def test_copies_are_dropped_oldest_first_past_their_budget():
    from distml.scheduler.copies import ResultCopies
    copies = ResultCopies(10)
    copies.keep("a", b"1234")
    copies.keep("b", b"1234")
    copies.keep("c", b"1234")
    assert "a" not in copies and copies.get("c") == b"1234" and copies.nbytes == 8
    copies.keep("d", b"x" * 11)  # larger than the whole budget: not kept
    assert "d" not in copies and copies.nbytes == 8
    copies.drop("b")
    assert copies.nbytes == 4 and len(copies) == 1
    with pytest.raises(ValueError, match="result_copies_bytes"):
        ResultCopies(-1)


def test_removal_is_final_only_when_an_error_would_name_the_death():
    s = new_state(A, B, allowed_failures=1)
    s.update_graph(C, {"x": spec()}, ["x"])
    holder = s.tasks["x"].processing_on.address
    s.task_started(holder, ["x"])
    assert not s.removal_is_final(holder)  # x would be rescheduled: no need to wait
    s.remove_worker(holder, "connection closed")
    again = s.tasks["x"].processing_on.address
    s.task_started(again, ["x"])
    assert s.removal_is_final(again)  # a second death fails x: its cause goes in the error
    s.add_worker("tcp://d:1", 1)
    s.scatter(C, {"data": ["tcp://d:1"]}, {"data": 8})
    assert s.removal_is_final("tcp://d:1")  # the only copy of scattered data
    assert not s.removal_is_final("tcp://unknown:1")


# ---------------------------------------------------------------------- no worker coming back
def test_pending_tasks_fail_when_no_worker_is_coming_back():
    s = new_state(A)
    s.update_graph(C, {"done": spec()}, ["done"])
    s.task_finished(A, "done", 8, 0.001, value=b"inline")  # the client holds it
    s.update_graph(C, {"x": spec(), "y": spec("x")}, ["y"])
    s.remove_worker(A, "exited with code 1")
    assert s.tasks["x"].state == QUEUED  # waits for a worker: one may come
    out = s.no_workers("A died and its nanny gave up restarting it")
    erred = {m["key"]: m for m in ops(out, C, "key-erred")}
    assert set(erred) == {"y"}  # x fails as y's input; done needs no worker
    assert erred["y"]["kind"] == "no-workers" and erred["y"]["erred_key"] == "x"
    assert "nanny gave up" in erred["y"]["text"] and "'x'" in erred["y"]["text"]
    out = s.update_graph(C, {"z": spec()}, ["z"])  # submitted meanwhile: fails at once
    assert [m["kind"] for m in ops(out, C, "key-erred")] == ["no-workers"]
    s.add_worker(B, 1)  # a worker joins again: new work runs, failed work can be retried
    out = s.update_graph(C, {"w": spec()}, ["w"])
    assert computes(out, B) == ["w"]
    s.task_finished(B, "w", 8, 0.001)
    out = s.retry(C, ["y"])
    assert computes(out, B) == ["x"]


def test_no_workers_while_one_is_connected_changes_nothing():
    s = new_state(A)
    s.update_graph(C, {"x": spec()}, ["x"])
    out = s.no_workers("a stale report")
    assert ops(out, C, "key-erred") == [] and s.workerless is None
    assert s.tasks["x"].state == PROCESSING


# ---------------------------------------------------------------------- random simulations
def _random_dag(rng: random.Random, n: int) -> dict[str, list[str]]:
    deps = {}
    for i in range(n):
        k = rng.randint(0, min(i, 3))
        deps[f"t-{i}"] = [f"t-{j}" for j in rng.sample(range(i), k)] if i else []
    return deps


@settings(derandomize=True, max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), kills=st.integers(0, 2))
def test_random_graphs_finish_and_leave_nothing_behind(seed, n, kills):
    """Simulated workers finish tasks in random order (sometimes dying); every wanted key ends
    in memory, data is freed as soon as nothing needs it, and releasing leaves no task."""
    rng = random.Random(seed)
    s = new_state(A, B, allowed_failures=10)
    deps = _random_dag(rng, n)
    wanted = rng.sample(sorted(deps), max(1, n // 4))
    running: dict[str, set[str]] = {A: set(), B: set()}
    holding: dict[str, set[str]] = {A: set(), B: set()}
    done: set[str] = set()

    def deliver(out):
        for recipient, msgs in out.items():
            for m in msgs:
                if m["op"] == "compute" and recipient in running:
                    assert all(holding_any(d) for d in m["deps"]), m
                    running[recipient].add(m["key"])
                elif m["op"] == "restore" and recipient in running:
                    holding[recipient].add(m["key"])
                elif m["op"] == "free" and recipient in running:
                    for k in m["keys"]:
                        running[recipient].discard(k)
                        holding[recipient].discard(k)
                elif m["op"] == "key-done":
                    done.add(m["key"])
                elif m["op"] == "key-recomputing":
                    done.discard(m["key"])

    def holding_any(key):
        return any(key in h for h in holding.values())

    deliver(s.update_graph(C, {k: spec(*d) for k, d in deps.items()}, wanted))
    workers_seen = 2
    for _ in range(20 * n + 50):
        busy = [w for w in running if running[w]]
        if not busy:
            break
        if kills and rng.random() < 0.05:
            kills -= 1
            victim = rng.choice(sorted(running))
            del running[victim], holding[victim]
            deliver(s.remove_worker(victim, "killed"))
            workers_seen += 1
            fresh = f"tcp://w{workers_seen}:1"
            running[fresh], holding[fresh] = set(), set()
            deliver(s.add_worker(fresh, 1))
            continue
        worker = rng.choice(busy)
        key = rng.choice(sorted(running[worker]))
        running[worker].discard(key)
        holding[worker].add(key)
        small = int(key.split("-")[1]) % 2 == 0  # its bytes come along: the scheduler copies it
        deliver(s.task_finished(worker, key, 8, 1e-4, value=b"v" if small else None))
    assert done == set(wanted), sorted(set(wanted) - done)
    # a wanted result is held by a worker, or by the client alone (it came inline, then its
    # worker died: recomputed only if something needs it on a worker again)
    client = s.clients[C]
    for key in wanted:
        assert s.tasks[key].state == MEMORY or (
            s.tasks[key].state == RELEASED and client in s.tasks[key].delivered), key
    needed_data = {k for k, ts in s.tasks.items() if ts.state == MEMORY}
    assert needed_data <= set(wanted)  # intermediates were released
    deliver(s.release_keys(C, wanted))
    assert s.tasks == {}
    assert all(not h for h in holding.values())
    assert len(s.copies) == 0 and s.copies.nbytes == 0
