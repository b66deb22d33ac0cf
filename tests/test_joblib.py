"""joblib's "distml" backend on a real 2 x 1-thread cluster: scikit-learn's n_jobs work, batching,
placed arguments, nested parallelism, generators, errors, cancellation and timeouts."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.model_selection import GridSearchCV, cross_val_score

from distml.client.future import RemoteTraceback
from distml.parallel import callbacks
from distml.parallel.backend import DistmlBackend, _BatchSizer
from distml.worker.context import TaskInterrupted
from conftest import wait_until


@pytest.fixture
def on_cluster(client):
    with joblib.parallel_config(backend="distml"):
        yield client


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=600, n_features=8, n_informative=5, random_state=0)


def keys_computed(cluster, prefix: str) -> set[str]:
    return {key for key, _, to, _ in cluster.scheduler.state.transition_log
            if to == "memory" and key.startswith(prefix)}


def double(x):
    return 2 * x


def test_backend_is_registered_by_importing_distml():
    assert "distml" in joblib.parallel.BACKENDS


def test_registration_waits_for_joblib_and_a_local_cluster_starts_when_no_client():
    code = ("import sys, logging; logging.basicConfig(level=logging.INFO)\n"
            "import distml\n"
            "assert 'joblib' not in sys.modules\n"
            "import joblib\n"
            "with joblib.parallel_config(backend='distml'):\n"
            "    print(sum(joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(100))))\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd(), DISTML_LOG_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4950"
    assert "no distml client, started a local cluster" in done.stderr


def test_short_calls_are_batched(on_cluster, cluster):
    before = keys_computed(cluster, "double-")
    results = Parallel()(delayed(double)(i) for i in range(3000))
    assert results == [2 * i for i in range(3000)]
    tasks = keys_computed(cluster, "double-") - before
    assert 1 <= len(tasks) < 1000  # typically a few dozen tasks for 3,000 calls


def describe(value, suffix="", *, scale=1):
    return f"{type(value).__name__}:{value if scale == 1 else value * scale}{suffix}"


def test_calls_with_scalars_keywords_and_other_objects(on_cluster):
    assert Parallel(batch_size=4)(delayed(describe)(i, "!") for i in range(10)) == \
        [f"int:{i}!" for i in range(10)]
    assert Parallel(batch_size=4)(delayed(describe)(i, scale=3) for i in range(10)) == \
        [f"int:{3 * i}" for i in range(10)]
    assert Parallel(batch_size=4)(delayed(describe)(v) for v in (1.5, np.float64(2), None, "a",
                                                                 (1, 2), b"x")) == \
        ["float:1.5", "float64:2.0", "NoneType:None", "str:a", "tuple:(1, 2)", "bytes:b'x'"]
    mixed = Parallel(batch_size=4)(delayed(describe if i % 2 else double)(i) for i in range(8))
    assert mixed == [describe(i) if i % 2 else 2 * i for i in range(8)]


def test_results_of_short_calls_come_with_their_completion(on_cluster, monkeypatch):
    fetched = []
    fetch = on_cluster._fetch

    async def counting_fetch(worker, keys):
        fetched.extend(keys)
        return await fetch(worker, keys)

    monkeypatch.setattr(on_cluster, "_fetch", counting_fetch)
    # 500 ints take ~18 KB in memory, over the 16 KiB inline limit, but ~1.5 KB pickled
    assert Parallel(batch_size=500)(delayed(double)(i) for i in range(4000)) == \
        [2 * i for i in range(4000)]
    assert fetched == []
    # results too large to come inline are fetched from the workers
    arrays = Parallel(batch_size=2)(delayed(np.full)(3000, i) for i in range(4))
    assert [a.tolist() for a in arrays] == [[i] * 3000 for i in range(4)]
    assert len(fetched) >= 1


def test_results_are_let_go_once_retrieved(on_cluster, cluster):
    def doubles_on_cluster():
        return [k for k in cluster.scheduler.state.tasks if k.startswith("double-")]

    for calls, batch_size in ((200, 10), (1000, 5)):  # under and over held_results batches
        assert Parallel(batch_size=batch_size)(delayed(double)(i) for i in range(calls)) == \
            [2 * i for i in range(calls)]
        wait_until(lambda: not doubles_on_cluster(), what=doubles_on_cluster)
    with Parallel(batch_size=10) as parallel:  # the backend stays up between calls
        assert parallel(delayed(double)(i) for i in range(200)) == [2 * i for i in range(200)]
        wait_until(lambda: not doubles_on_cluster(), what=doubles_on_cluster)


def test_callback_threads_are_kept_for_later_calls(on_cluster):
    for _ in range(10):
        assert Parallel()(delayed(double)(i) for i in range(20)) == [2 * i for i in range(20)]
    serving = [t for t in threading.enumerate() if t.name == "distml-joblib-callbacks"]
    assert 1 <= len(serving) <= callbacks.MAX_IDLE


def test_completions_after_their_call_ended_reach_no_other_call():
    ran = []
    done = threading.Event()
    ended = callbacks.CallbackChannel()
    ended.close()
    current = callbacks.CallbackChannel()  # often served by the thread that served ``ended``
    ended.put(ran.append, "late")
    current.put(lambda value: (ran.append(value), done.set()), "current")
    assert done.wait(30)
    current.close()
    assert ran == ["current"]


def test_batch_sizes_follow_the_measured_time_per_call():
    sizer = _BatchSizer(target=0.2)
    assert sizer.next_size() == 1
    sizer.completed(1, 0.002)  # a short call: the batch took about one round trip
    assert sizer.next_size() == 100
    sizer.completed(100, 0.004)
    assert sizer.next_size() == 5000
    sizer.completed(5000, 2.0)  # calls got slower: back down at once
    assert sizer.next_size() == 500
    slow = _BatchSizer(target=0.2)
    slow.next_size()
    slow.completed(1, 0.5)
    assert slow.next_size() == 1


def test_effective_n_jobs_counts_the_cluster_threads(on_cluster):
    assert joblib.effective_n_jobs(-1) == 2
    assert joblib.effective_n_jobs(-2) == 1
    assert joblib.effective_n_jobs(5) == 5


def test_thread_count_is_remembered_and_refreshed_in_the_background(client, monkeypatch):
    from distml.parallel import threads

    asked = []
    nthreads = client.nthreads
    monkeypatch.setattr(client, "nthreads", lambda: asked.append(1) or nthreads())
    monkeypatch.setitem(threads._seen, client, (time.monotonic() - 60, 7))  # too old: asked
    assert threads.total_threads(client, 10) == 2 and len(asked) == 1
    assert threads.total_threads(client, 10) == 2 and len(asked) == 1  # fresh: remembered
    threads._seen[client] = (time.monotonic() - 5, 7)  # stale: used, asked again meanwhile
    assert threads.total_threads(client, 10) == 7
    wait_until(lambda: threads._seen[client][1] == 2, what=lambda: threads._seen[client])
    assert len(asked) == 2


def test_options_are_checked():
    with pytest.raises(TypeError, match="scatter must be a list"):
        DistmlBackend(scatter="X")
    with pytest.raises(ValueError, match="scatter_threshold"):
        DistmlBackend(scatter_threshold=-1)


def column_sum(matrix, column):
    return float(matrix[:, column].sum())


def test_large_arguments_are_placed_once_and_shared(on_cluster, cluster):
    matrix = np.random.default_rng(0).random((2000, 100))  # 1.6 MB
    before = keys_computed(cluster, "ndarray-")
    sums = Parallel(batch_size=1)(delayed(column_sum)(matrix, c) for c in range(40))
    assert np.allclose(sums, matrix.sum(axis=0)[:40])
    assert len(keys_computed(cluster, "ndarray-") - before) == 1


def test_explicit_scatter(client, cluster):
    small = np.arange(1000.0).reshape(100, 10) + 0.5  # under the size threshold
    before = keys_computed(cluster, "ndarray-")
    with joblib.parallel_config(backend="distml", scatter=[small]):
        sums = Parallel(batch_size=1)(delayed(column_sum)(small, c) for c in range(10))
    assert sums == [float(small[:, c].sum()) for c in range(10)]
    assert len(keys_computed(cluster, "ndarray-") - before) == 1


def predict_rows(model, frame, start):
    return model.predict(frame.iloc[start:start + 10].to_numpy()).tolist()


def test_fitted_models_and_frames_are_placed_once(client, cluster, data):
    import pandas as pd

    X, y = data
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    frame = pd.DataFrame(X)
    before = keys_computed(cluster, "RandomForestClassifier-") | keys_computed(cluster,
                                                                              "DataFrame-")
    with joblib.parallel_backend("distml", scatter_threshold=5_000):
        rows = Parallel(batch_size=2)(delayed(predict_rows)(model, frame, s)
                                      for s in range(0, 100, 10))
    assert sum(rows, []) == model.predict(X[:100]).tolist()
    placed = (keys_computed(cluster, "RandomForestClassifier-")
              | keys_computed(cluster, "DataFrame-")) - before
    assert {key.split("-")[0] for key in placed} == {"RandomForestClassifier", "DataFrame"}
    assert len(placed) == 2


def apply(function, values):
    return function(values)


def test_lambdas_next_to_arrays(on_cluster):
    values = np.arange(100_000.0)
    results = Parallel()(delayed(apply)(lambda v, k=k: float((v * k).sum()), values)
                         for k in range(4))
    assert results == [float((values * k).sum()) for k in range(4)]


def test_generators(on_cluster):
    ordered = Parallel(return_as="generator")(delayed(double)(i) for i in range(50))
    assert list(ordered) == [2 * i for i in range(50)]
    unordered = Parallel(return_as="generator_unordered")(delayed(double)(i) for i in range(50))
    assert sorted(unordered) == [2 * i for i in range(50)]


def fail_or_wait(i, folder):
    if i == 1:
        for _ in range(3000):  # fail once item 0 runs (on the other worker)
            if os.path.exists(os.path.join(folder, "started-0")):
                break
            time.sleep(0.01)
        raise ValueError(f"item {i} is bad")
    open(os.path.join(folder, f"started-{i}"), "w").close()
    try:
        for _ in range(3000):  # 30 s unless interrupted
            time.sleep(0.01)
    except TaskInterrupted:
        open(os.path.join(folder, f"interrupted-{i}"), "w").close()
        raise
    open(os.path.join(folder, f"done-{i}"), "w").close()
    return i


def test_first_error_is_raised_and_the_rest_cancelled(on_cluster, tmp_path):
    on_cluster.run(double, 1)  # this module imported on every worker
    with pytest.raises(ValueError, match="item 1 is bad") as info:
        Parallel(batch_size=1)(delayed(fail_or_wait)(i, str(tmp_path)) for i in range(20))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_or_wait" in str(info.value.__cause__)
    wait_until(lambda: os.path.exists(tmp_path / "interrupted-0"), timeout=20,
               what=lambda: f"the running batch to be interrupted: {os.listdir(tmp_path)}")
    assert not [name for name in os.listdir(tmp_path) if name.startswith("done-")]


def sleep_or_return(i, folder):
    if i == 0:
        fail_or_wait(i, folder)
    return i


def test_timeout_raises_and_cancels(on_cluster, tmp_path):
    on_cluster.run(double, 1)  # this module imported on every worker
    with pytest.raises(multiprocessing.TimeoutError):
        Parallel(timeout=3, batch_size=1)(delayed(sleep_or_return)(i, str(tmp_path))
                                          for i in range(4))
    wait_until(lambda: os.path.exists(tmp_path / "interrupted-0"), timeout=20,
               what=lambda: "the timed out batch to be interrupted")


def inner_sum(n):
    return sum(Parallel()(delayed(double)(i) for i in range(n)))


def test_nested_parallel_runs_on_the_cluster_without_deadlock(on_cluster):
    results = Parallel(batch_size=1)(delayed(inner_sum)(n) for n in (10, 50, 100, 200, 300))
    assert results == [n * (n - 1) for n in (10, 50, 100, 200, 300)]


# ---------------------------------------------------------------------- scikit-learn
def test_random_forest_matches_the_default_backend(on_cluster, data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0).fit(X, y)
    with joblib.parallel_config(backend="loky"):
        local = RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0).fit(X, y)
    assert np.array_equal(forest.predict_proba(X), local.predict_proba(X))


def test_grid_search_over_forests_nested(on_cluster, data):
    X, y = data
    grid = {"max_depth": [2, 4], "max_features": [2, 4]}

    def search():
        forest = RandomForestClassifier(n_estimators=8, n_jobs=-1, random_state=0)
        return GridSearchCV(forest, grid, cv=3, n_jobs=-1).fit(X, y)

    on_distml = search()
    with joblib.parallel_config(backend="loky"):
        local = search()
    assert on_distml.best_params_ == local.best_params_
    assert np.array_equal(on_distml.cv_results_["mean_test_score"],
                          local.cv_results_["mean_test_score"])


def test_cross_val_score_and_permutation_importance(on_cluster, data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    scores = cross_val_score(forest, X, y, cv=4, n_jobs=-1)
    fitted = forest.fit(X, y)
    importances = permutation_importance(fitted, X, y, n_repeats=4, random_state=0, n_jobs=-1)
    with joblib.parallel_config(backend="loky"):
        local_scores = cross_val_score(forest, X, y, cv=4, n_jobs=-1)
        local_importances = permutation_importance(fitted, X, y, n_repeats=4, random_state=0,
                                                   n_jobs=-1)
    assert np.array_equal(scores, local_scores)
    assert np.array_equal(importances.importances, local_importances.importances)
