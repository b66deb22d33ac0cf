"""Progress bars, activity reports, the scheduler's task stream and memory history, performance
reports and cluster-state dumps, on real clusters."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import distml
from distml import Client
from distml.diagnostics import ProgressBar, finish_activity, progress_enabled, report_activity
from distml.diagnostics.progress import futures_of

from conftest import wait_until


def inc(x):
    return x + 1


def fail(x):
    raise ValueError(f"bad {x}")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------------- progress bars
def test_progress_bar_quiet_without_terminal(capsys):
    with ProgressBar(5, "quiet") as bar:
        for _ in range(5):
            bar.update()
    assert bar.disabled and bar.n == 5
    assert capsys.readouterr().err == ""


def test_progress_bar_draws_on_terminal_unless_switched_off(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("DISTML_PROGRESS", raising=False)
    assert progress_enabled()
    with ProgressBar(3, "loading", unit="chunk") as bar:
        bar.update(2)
        bar.update()
    assert not bar.disabled
    text = terminal.getvalue()
    assert "loading" in text and "3/3" in text and "chunk" in text
    bar.update()  # after close: ignored
    assert bar.n == 3

    monkeypatch.setenv("DISTML_PROGRESS", "0")
    assert not progress_enabled()
    before = len(terminal.getvalue())
    with ProgressBar(2, "off") as bar:
        bar.update(2)
    assert bar.disabled and len(terminal.getvalue()) == before
    assert not progress_enabled(distml.Config(progress=False))


def test_progress_bar_rejects_bad_total():
    with pytest.raises(ValueError, match="non-negative integer"):
        ProgressBar(-1, "x")
    with pytest.raises(ValueError, match="non-negative integer"):
        ProgressBar(2.5, "x")


def test_progress_waits_for_futures_lists_and_dicts(client, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    futures = client.map(inc, range(20))
    assert distml.progress(futures, desc="incs") is futures
    assert all(f.done() for f in futures)
    assert "incs" in terminal.getvalue() and "20/20" in terminal.getvalue()
    named = {"a": client.submit(inc, 1), "b": [client.submit(inc, 2)]}
    distml.progress(named, disable=True)
    assert named["a"].done() and named["b"][0].done()
    failing = client.map(fail, range(3))
    distml.progress(failing)  # failures count as done; the error comes with the result
    assert all(f.status == "error" for f in failing)
    assert "failed=3" in terminal.getvalue()
    with pytest.raises(ValueError, match="bad 0"):
        failing[0].result()


def test_progress_on_persisted_collection(client):
    import distml.array as da

    x = da.from_array(np.arange(100.0), chunks=10)
    with pytest.raises(ValueError, match="not persisted"):
        distml.progress(x)
    persisted = client.persist(x + 1)
    assert len(futures_of(persisted)) == 10
    assert distml.progress(persisted) is persisted
    assert all(f.done() for f in futures_of(persisted))
    np.testing.assert_array_equal(persisted.compute(), np.arange(100.0) + 1)
    with pytest.raises(TypeError, match="futures or a persisted collection"):
        distml.progress(42)


def slow_block(block):
    import time
    time.sleep(0.05)
    return block * 2


def test_compute_shows_a_bar_over_the_graphs_tasks_on_a_terminal(client, monkeypatch):
    import distml.array as da

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("DISTML_PROGRESS", raising=False)
    x = da.from_array(np.arange(400.0), chunks=10).map_blocks(slow_block)
    total = x.sum()
    tasks = len(dict(total.__distml_graph__()))
    assert float(client.compute(total, sync=True)) == float(np.arange(400.0).sum() * 2)
    text = terminal.getvalue()
    assert "compute" in text and f"{tasks}/{tasks}" in text
    # the poll saw the graph part-way: some update drew a count between 0 and the total
    counts = [int(m) for m in __import__("re").findall(r"(\d+)/" + str(tasks), text)]
    assert any(0 < c < tasks for c in counts), text[-500:]
    assert client.run(lambda: 1)  # the cluster is left as it was
    monkeypatch.setattr(client, "config", client.config.replace(progress=False))
    before = len(terminal.getvalue())
    assert float(client.compute(total, sync=True)) == float(np.arange(400.0).sum() * 2)
    assert len(terminal.getvalue()) == before  # switched off: nothing drawn


# ---------------------------------------------------------------------- activities
def test_report_activity_reaches_the_scheduler(cluster, client):
    board = cluster.scheduler.recorder.activities

    def mine():
        return [e for e in board.snapshot() if e["client"] == client.id]

    report_activity("search", kind="search", done=12, total=48, best_score=np.float64(0.93))
    wait_until(lambda: len(mine()) == 1, what=lambda: board.snapshot())
    entry = mine()[0]
    assert entry["name"] == "search"
    assert entry["fields"] == {"kind": "search", "done": 12, "total": 48, "best_score": 0.93}
    report_activity("search", kind="search", done=13, total=48, best_score=0.94)
    wait_until(lambda: mine()[0]["fields"]["done"] == 13)
    finish_activity("search")
    wait_until(lambda: not mine())
    report_activity("fit", epoch=1)
    wait_until(lambda: len(mine()) == 1)
    client.close()  # a client's activities end with it
    wait_until(lambda: not mine())


def _reporting_task(epochs):
    for epoch in range(epochs):
        report_activity("fit-in-a-task", epoch=epoch + 1, epochs=epochs)
    return epochs


def test_report_activity_from_inside_a_task(cluster, client):
    board = cluster.scheduler.recorder.activities
    assert client.submit(_reporting_task, 3).result() == 3
    wait_until(lambda: any(e["name"] == "fit-in-a-task" and e["fields"]["epoch"] == 3
                           for e in board.snapshot()), what=lambda: board.snapshot())
    entry = next(e for e in board.snapshot() if e["name"] == "fit-in-a-task")
    assert entry["client"] != client.id  # the worker's own client sent it


def test_report_activity_checks_fields_and_is_silent_without_client():
    assert distml.default_client() is None
    report_activity("nobody-listens", done=1)  # no client: nothing happens
    with pytest.raises(ValueError, match="must be a number, string"):
        report_activity("x", model=object())
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        report_activity("")
    with pytest.raises(ValueError, match="longer than"):
        report_activity("x", note="y" * 500)


def test_activity_board_is_bounded_and_refuses_bad_messages():
    from distml.diagnostics.activity import ActivityBoard
    from distml.errors import ProtocolError

    board = ActivityBoard(limit=3)
    for i in range(5):
        board.update("c", {"name": f"a{i}", "fields": {"i": i}})
    assert [e["name"] for e in board.snapshot()] == ["a4", "a3", "a2"]
    with pytest.raises(ProtocolError, match="fields must be a dict"):
        board.update("c", {"name": "x", "fields": [1, 2]})
    with pytest.raises(ProtocolError, match="must be a number"):
        board.update("c", {"name": "x", "fields": {"a": {"nested": 1}}})
    with pytest.raises(ProtocolError, match="name must be"):
        board.update("c", {"name": 7, "fields": {}})


def test_hostile_activity_message_disconnects_only_that_client(cluster, client):
    from distml.batched import unbatch
    from distml.comm import connect
    from distml.loop import shared_loop

    async def misbehave():
        comm = await connect(cluster.scheduler_address, cluster.config)
        await comm.send({"op": "register-client", "client": "client-rogue-activity"})
        await comm.recv()
        await comm.send({"op": "activity", "name": "x", "fields": {"a": [1, 2, 3]}})
        reply, _ = await comm.recv()
        await comm.close()
        return unbatch(reply)[-1][0]

    reply = shared_loop().run(misbehave(), timeout=10)
    assert reply["op"] == "error" and "must be a number" in reply["message"]
    assert client.submit(inc, 1).result() == 2


# ---------------------------------------------------------------------- the scheduler's record
def slow_fail(x):
    import time
    time.sleep(0.1)
    raise ValueError(f"slow bad {x}")


def test_scheduler_records_task_timings_and_memory(cluster, client):
    recorder = cluster.scheduler.recorder
    since = recorder.history(float("inf"))["now"]
    futures = client.map(inc, range(10), key="rec-inc")
    failing = client.submit(slow_fail, 1, key="rec-fail-1")
    distml.wait(futures + [failing])
    history = recorder.history(since)
    records = {r[3]: r for r in history["task_stream"]}
    assert {f.key for f in futures} <= set(records)
    for key in (f.key for f in futures):
        start, stop, worker, _, status = records[key]
        assert since <= start <= stop <= history["now"] and status == "ok"
        assert worker in cluster.workers
    start, stop, _, _, status = records["rec-fail-1"]
    assert status == "error" and stop - start >= 0.09  # from the worker's "started" message
    assert history["task_stream_complete"]
    wait_until(lambda: len(recorder.memory_since(since)) >= 2)
    t, sample = recorder.memory_since(since)[-1]
    assert set(sample) == set(cluster.workers)
    assert all(rss > 0 for rss, *_ in sample.values())
    del futures, failing


def test_recorder_is_bounded_and_says_when_a_window_was_cut():
    from distml.diagnostics.recorder import Recorder

    recorder = Recorder(task_stream_length=5)
    for i in range(8):
        recorder.task_started([f"k-{i}"], float(i))
        recorder.task_finished("w", f"k-{i}", 0.5, float(i) + 1)
    assert len(recorder.task_stream) == 5 and recorder.recorded == 8
    assert [r[3] for r in recorder.recent_tasks(2)] == ["k-6", "k-7"]
    assert not recorder.history(0.0)["task_stream_complete"]  # k-0..k-2 were dropped
    assert recorder.history(6.5)["task_stream_complete"]
    assert [r[3] for r in recorder.tasks_since(7.0)] == ["k-6", "k-7"]
    recorder.task_started([f"never-{i}" for i in range(3000)], 9.0)  # never report back
    assert len(recorder._running_since) == 1024
    recorder.task_started([["not", "a", "key"]], 9.0)  # a hostile worker's junk is ignored
    assert len(recorder._running_since) == 1024
