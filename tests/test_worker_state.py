"""The worker's state machine on its own: events in, instructions out."""

from __future__ import annotations

from distml.worker.state import (Execute, Fetch, Forget, Interrupt, SendToScheduler,
                                 WorkerStateMachine)

ME = "tcp://me:1"
P1 = "tcp://p1:1"
P2 = "tcp://p2:1"


def kinds(out, kind):
    return [i for i in out if isinstance(i, kind)]


def sent(out, op):
    return [i.msg for i in out if isinstance(i, SendToScheduler) and i.msg["op"] == op]


def test_runs_by_priority_within_thread_limit():
    w = WorkerStateMachine(nthreads=2, address=ME)
    out = []
    for i, prio in enumerate([5, 1, 3, 0]):
        out += w.compute(f"t{i}", b"", [0, prio], {})
    assert [e.key for e in kinds(out, Execute)] == ["t0", "t1"]  # first two take both threads
    out = w.task_done("t0", 8, 0.1)
    assert [e.key for e in kinds(out, Execute)] == ["t3"]  # then highest priority (lowest number)
    assert sent(out, "task-finished") == [{"op": "task-finished", "key": "t0", "nbytes": 8,
                                           "duration": 0.1}]


def test_fetches_missing_inputs_grouped_by_peer_then_runs():
    w = WorkerStateMachine(nthreads=1, address=ME)
    out = w.compute("sum", b"", [0, 0], {"a": [P1], "b": [P1], "c": [P2]})
    fetches = {f.address: sorted(f.keys) for f in kinds(out, Fetch)}
    assert fetches == {P1: ["a", "b"], P2: ["c"]}
    assert not kinds(out, Execute)
    out = w.fetch_done(P1, {"a": 1, "b": 1})
    assert not kinds(out, Execute)
    assert [m["key"] for m in sent(out, "add-replica")] == ["a", "b"]
    out = w.fetch_done(P2, {"c": 1})
    assert [e.key for e in kinds(out, Execute)] == ["sum"]


def test_failed_fetch_tries_next_holder_then_reports_missing():
    w = WorkerStateMachine(nthreads=1, address=ME)
    out = w.compute("t", b"", [0, 0], {"a": [P1, P2]})
    (first,) = kinds(out, Fetch)
    out = w.fetch_failed(first.address, ["a"])
    (second,) = kinds(out, Fetch)
    assert second.address != first.address
    out = w.fetch_failed(second.address, ["a"])
    (msg,) = sent(out, "missing-data")
    assert msg["key"] == "t" and msg["dep"] == "a" and set(msg["holders"]) == {P1, P2}
    assert "t" not in w.tasks


def test_free_cancels_queued_and_discards_running_result():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("running", b"", [0, 0], {})
    w.compute("queued", b"", [0, 1], {})
    out = w.free(["running", "queued"])
    assert not kinds(out, Execute)  # the freed queued task never starts
    out = w.task_done("running", 8, 0.1)
    assert not sent(out, "task-finished") and kinds(out, Forget)
    assert w.in_memory == {}


def test_a_failed_fetch_nobody_wanted_any_more_is_not_held_against_the_peer():
    """A fetch of ``k`` from P1 failed after the only task wanting it was freed; a task that
    wants ``k`` later, from P1 again (which may hold it by then), must fetch it there, not wait
    for ever (seen hanging a dataframe example: a stale 'tried' kept P1 out)."""
    w = WorkerStateMachine(nthreads=1, address=ME)
    (fetch,) = kinds(w.compute("t1", b"", [0, 0], {"k": [P1]}), Fetch)
    w.free(["t1"])
    assert not w.fetch_failed(P1, ["k"])  # nothing to report: nobody wants k now
    out = w.compute("t2", b"", [0, 1], {"k": [P1]})
    assert [(f.address, f.keys) for f in kinds(out, Fetch)] == [(P1, ["k"])]
    out = w.fetch_failed(P1, ["k"])  # really gone this time: the scheduler hears of it
    assert [m["dep"] for m in sent(out, "missing-data")] == ["k"]


def test_steal_only_unstarted():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("running", b"", [0, 0], {})
    w.compute("queued", b"", [0, 1], {})
    w.tasks_started(["running"])
    assert sent(w.steal("running"), "steal-response")[0]["ok"] is False
    assert sent(w.steal("queued"), "steal-response")[0]["ok"] is True
    assert not kinds(w.task_done("running", 1, 0.0), Execute)


def test_steal_a_task_handed_to_the_threads_ahead_that_none_took_up():
    """A prefetched task waits in the threads' queue behind the running one: a steal takes
    it (the threads skip it), and nothing of it is reported or kept here."""
    w = WorkerStateMachine(nthreads=1, address=ME, prefetch=1)
    out = w.compute("running", b"", [0, 0], {}) + w.compute("ahead", b"", [0, 1], {})
    assert [e.key for e in kinds(out, Execute)] == ["running", "ahead"]
    w.tasks_started(["running"])
    out = w.steal("ahead")
    assert sent(out, "steal-response")[0]["ok"] is True
    assert [i.key for i in kinds(out, Interrupt)] == ["ahead"]
    w.task_done("running", 1, 0.0)
    out = w.task_interrupted("ahead")  # the threads skipped it
    assert not sent(out, "task-finished") and "ahead" not in w.tasks and not w.executing
    # had a thread taken it up first, it would have run on (and its result been dropped)
    w.compute("late", b"", [0, 2], {})
    w.tasks_started(["late"])
    assert sent(w.steal("late"), "steal-response")[0]["ok"] is False


def test_a_stolen_task_that_a_thread_took_up_meanwhile_leaves_no_result():
    w = WorkerStateMachine(nthreads=1, address=ME, prefetch=1)
    w.compute("running", b"", [0, 0], {})
    w.compute("ahead", b"", [0, 1], {})
    w.steal("ahead")  # granted: the scheduler has not heard "started" yet
    w.task_done("running", 1, 0.0)
    out = w.task_done("ahead", 8, 0.1)  # the interruption came too late
    assert not sent(out, "task-finished") and kinds(out, Forget) and w.in_memory == {"running": 1}


def test_failure_is_reported():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("t", b"", [0, 0], {})
    out = w.task_failed("t", [b"e"], [b"tb"], "ValueError: x")
    assert sent(out, "task-erred")[0]["text"] == "ValueError: x"


def test_pause_holds_new_executions():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.set_paused(True)
    assert not kinds(w.compute("t", b"", [0, 0], {}), Execute)
    assert [e.key for e in kinds(w.set_paused(False), Execute)] == ["t"]


def test_already_held_result_is_reported_at_once():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("t", b"", [0, 0], {})
    w.task_done("t", 4, 0.0)
    out = w.compute("t", b"", [0, 0], {})
    assert sent(out, "task-finished")[0]["nbytes"] == 4


def test_one_fetch_asks_a_peer_for_a_bounded_number_of_bytes():
    w = WorkerStateMachine(nthreads=1, address=ME, max_fetch_bytes=100)
    deps = {f"d{i}": [P1] for i in range(5)}
    out = w.compute("t", b"", [0, 0], deps, {k: 40 for k in deps})
    (first,) = kinds(out, Fetch)
    assert len(first.keys) == 2  # 80 bytes; a third would pass 100
    out = w.fetch_done(P1, {k: 40 for k in first.keys})
    (second,) = kinds(out, Fetch)
    assert len(second.keys) == 2 and not set(second.keys) & set(first.keys)


def test_restored_input_readies_its_task_and_a_late_fetch_keeps_it():
    w = WorkerStateMachine(nthreads=1, address=ME)
    out = w.compute("t", b"", [0, 0], {"a": [P1], "b": [P2]})
    assert {f.address for f in kinds(out, Fetch)} == {P1, P2}
    out = w.restore("a", 8)  # P1 died; the scheduler handed its copy of a to this worker
    assert not kinds(out, Execute) and w.in_memory["a"] == 8
    out = w.fetch_failed(P1, ["a"])  # the fetch from the dead holder fails afterwards
    assert not sent(out, "missing-data") and "t" in w.tasks
    out = w.fetch_done(P2, {"b": 8})
    assert [e.key for e in kinds(out, Execute)] == ["t"]
    w.task_done("t", 8, 0.01)
    out = w.fetch_done(P1, {"a": 8})  # a copy that was on its way lands after all
    assert not kinds(out, Forget) and "a" in w.in_memory


def test_restore_of_an_input_nobody_waits_for_yet_is_kept_for_later_tasks():
    w = WorkerStateMachine(nthreads=1, address=ME)
    assert w.restore("a", 8) == []
    out = w.compute("t", b"", [0, 0], {"a": [ME]})
    assert not kinds(out, Fetch) and [e.key for e in kinds(out, Execute)] == ["t"]


def test_a_cancelled_run_that_ends_after_its_key_was_restored_keeps_the_restored_value():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("x", b"", [0, 0], {})
    w.free(["x"])  # still running: cancelled (it ran elsewhere meanwhile, whose worker died)
    w.restore("x", 8)  # the scheduler hands its copy of x here
    out = w.task_done("x", 8, 0.01)  # the cancelled run ends: its value is dropped, not x's
    assert not kinds(out, Forget) and w.in_memory["x"] == 8
    out = w.compute("y", b"", [0, 0], {"x": [ME]})
    assert [e.key for e in kinds(out, Execute)] == ["y"]


def test_inputs_found_gone_at_execution_hand_the_task_back():
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.restore("a", 8)
    (run,) = kinds(w.compute("t", b"", [0, 0], {"a": [ME]}), Execute)
    out = w.inputs_gone("t", ["a"])
    assert sent(out, "missing-data") == [{"op": "missing-data", "key": "t", "dep": "a",
                                          "holders": [ME]}]
    assert "t" not in w.tasks and "a" not in w.in_memory and not w.executing


def test_a_task_waiting_for_an_input_runs_when_this_worker_computes_that_input():
    # recovery can ask this worker to compute an input it was fetching for another task
    w = WorkerStateMachine(nthreads=1, address=ME)
    out = w.compute("b", b"", [0, 1], {"a": [P1]})
    assert [f.keys for f in kinds(out, Fetch)] == [["a"]]
    out = w.compute("a", b"", [0, 0], {})
    assert [e.key for e in kinds(out, Execute)] == ["a"]
    out = w.task_done("a", 8, 0.1)
    assert [e.key for e in kinds(out, Execute)] == ["b"]
    out = w.fetch_done(P1, {"a": 8})  # the fetch still in flight lands on the same value
    assert not sent(out, "add-replica") and not kinds(out, Forget)
    assert w.in_memory["a"] == 8


def fetched_input_of_a_ready_task() -> WorkerStateMachine:
    """A 1-thread worker busy with "busy", and "t" ready behind it with input "d" fetched
    from a peer."""
    w = WorkerStateMachine(nthreads=1, address=ME)
    w.compute("busy", b"", [0, 0], {})  # takes the only thread
    w.compute("t", b"", [0, 1], {"d": [P1]})
    out = w.fetch_done(P1, {"d": 8})
    assert not kinds(out, Execute)  # ready, behind "busy"
    return w


def test_an_input_the_scheduler_frees_stays_for_the_task_here_that_needs_it():
    # the scheduler frees a fetched copy it did not know of (its result was lost with another
    # worker and is being recomputed) while a task here is ready to use it
    w = fetched_input_of_a_ready_task()
    out = w.free(["d"])
    assert not kinds(out, Forget) and w.has_data(["d"])
    out = w.task_done("busy", 1, 0.1)
    assert [e.key for e in kinds(out, Execute)] == ["t"]
    out = w.task_done("t", 1, 0.1)
    assert [f.key for f in kinds(out, Forget)] == ["d"] and not w.has_data(["d"])


def test_a_freed_input_goes_once_its_last_task_here_is_dropped():
    w = fetched_input_of_a_ready_task()
    w.free(["d"])
    out = w.free(["t"])
    assert [f.key for f in kinds(out, Forget)] == ["d"] and not w.has_data(["d"])


def test_a_freed_input_scattered_again_stays_when_its_task_leaves():
    w = fetched_input_of_a_ready_task()
    w.free(["d"])  # kept for "t"
    w.data_put({"d": 8}, "put-1")  # a client scatters the same key: held here again
    out = w.free(["t"])
    assert not kinds(out, Forget) and w.has_data(["d"])


def test_a_free_that_predates_a_scatter_does_not_drop_its_copy():
    """The client released ``k`` and scattered it again at once: the scheduler's free (decided
    on the release) may reach the worker after the new copy, before the scheduler confirms it."""
    w = WorkerStateMachine(1)
    w.data_put({"k": 8}, "put-1")
    w.confirm(["k"], "put-1")
    w.data_put({"k": 8}, "put-2")
    assert not kinds(w.free(["k"]), Forget) and w.has_data(["k"])  # stale: put-2 unconfirmed
    w.confirm(["k"], "put-2")
    assert [f.key for f in kinds(w.free(["k"]), Forget)] == ["k"]  # after confirmation: applies


def test_a_confirmation_counts_for_its_own_put_only():
    w = WorkerStateMachine(1)
    w.data_put({"k": 8}, "put-1")
    w.data_put({"k": 8}, "put-2")  # arrived before the scheduler confirmed put-1
    w.confirm(["k"], "put-1")
    assert not kinds(w.free(["k"]), Forget) and w.has_data(["k"])
    w.confirm(["k"], "put-2")
    assert kinds(w.free(["k"]), Forget)
