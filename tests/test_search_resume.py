"""Searches that survive failures: a client SIGKILLed mid-search resumes from its checkpoint
without refitting anything already scored, and a worker SIGKILLed mid-search changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import sklearn.model_selection as skms
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from conftest import wait_until
from distml import Client, LocalCluster
from distml.estimators.model_selection import GridSearchCV
from test_search import assert_same_results

GRID = {"clf__C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}


class LoggedClassifier(LogisticRegression):
    """LogisticRegression that appends a line to ``log`` per fit and takes ``delay`` seconds
    more, so a search lasts long enough to be interrupted."""

    def __init__(self, C: float = 1.0, log: str = "", delay: float = 0.0) -> None:
        super().__init__(C=C, max_iter=500)
        self.log = log
        self.delay = delay

    def fit(self, X, y, **kw):
        time.sleep(self.delay)
        super().fit(X, y, **kw)
        with open(self.log, "a") as f:
            f.write(f"{self.C} {len(X)}\n")
        return self


def make_search(log: str, checkpoint: str | None, delay: float) -> GridSearchCV:
    est = Pipeline([("scale", StandardScaler()),
                    ("clf", LoggedClassifier(log=log, delay=delay))])
    return GridSearchCV(est, GRID, cv=3, checkpoint=checkpoint, progress=False)


def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500], y[:500]


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from distml import Client
from test_search_resume import digits, make_search
with Client({address!r}):
    make_search({log!r}, {checkpoint!r}, 0.3).fit(*digits())
"""


def kill_when_recorded(script: str, cluster, log, checkpoint, n: int) -> None:
    """Run ``script`` (a search) as a client in a subprocess, SIGKILL it once ``n`` results
    are in its checkpoint, and wait until the cluster has dropped the dead client's work."""
    script = script.format(paths=sys.path, address=cluster.scheduler_address, log=str(log),
                           checkpoint=str(checkpoint))
    env = {**os.environ, "DISTML_SECRET": cluster.config.secret}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env)
    try:
        wait_until(lambda: len(lines(checkpoint)) >= n or proc.poll() is not None,
                   timeout=60, what=lambda: f"{n} results in the checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the search finished before it was killed"
    # the cluster drops the dead client's work; a fit already running may still log
    wait_until(lambda: not cluster.scheduler.state.tasks, timeout=30,
               what=lambda: f"tasks left: {list(cluster.scheduler.state.tasks)[:3]}")


def test_client_killed_mid_search_resumes_from_checkpoint(tmp_path):
    log, checkpoint = tmp_path / "fits.log", tmp_path / "search.ckpt"
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        kill_when_recorded(SCRIPT, cluster, log, checkpoint, 5)
        scored = len(lines(checkpoint))
        assert all(json.loads(line)["result"]["fit_error"] is None
                   for line in lines(checkpoint))
        before = lines(log)
        total = len(GRID["clf__C"]) * 3
        assert 5 <= scored < total
        with Client(cluster):  # the same arguments as the killed run
            resumed = make_search(str(log), str(checkpoint), 0.3).fit(*digits())
        new = [int(line.split()[1]) for line in lines(log)[len(before):]]
        n_rows = len(digits()[0])
        # the unscored candidate-folds, and the refit (and at most one refit started early,
        # of the candidate leading when a worker ran out of work, if it was not the best)
        assert sum(rows < n_rows for rows in new) == total - scored
        assert 1 <= sum(rows == n_rows for rows in new) <= 2
    assert len(lines(checkpoint)) == total
    reference = skms.GridSearchCV(make_search(str(tmp_path / "ref.log"), None, 0.0).estimator,
                                  GRID, cv=3).fit(*digits())
    assert_same_results(resumed, reference)


def test_finished_search_rerun_fits_only_the_refit(tmp_path):
    log, checkpoint = tmp_path / "fits.log", tmp_path / "search.ckpt"
    first = make_search(str(log), str(checkpoint), 0.0).fit(*digits())
    count = len(lines(log))
    again = make_search(str(log), str(checkpoint), 0.0).fit(*digits())
    assert len(lines(log)) == count + 1
    assert_same_results(again, first)
    with open(checkpoint, "a") as f:  # a line torn by a crash is skipped, not fatal
        f.write('{"key": "abc", "res')
    make_search(str(log), str(checkpoint), 0.0).fit(*digits())
    assert len(lines(log)) == count + 2


def test_worker_killed_mid_search_same_results(tmp_path):
    log, checkpoint = tmp_path / "fits.log", tmp_path / "search.ckpt"
    X, y = digits()
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster):
        search = make_search(str(log), str(checkpoint), 0.2)
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["search"] = search.fit(X, y)
            except BaseException as exc:  # reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: len(lines(checkpoint)) >= 3 or not thread.is_alive(), timeout=60,
                   what=lambda: "three scored candidate-folds")
        assert thread.is_alive(), "the search finished before the worker was killed"
        cluster.supervisors[0].kill(signal.SIGKILL)
        thread.join(timeout=100)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert cluster.supervisors[0].restarts == 1
    assert len(lines(checkpoint)) == len(GRID["clf__C"]) * 3
    reference = skms.GridSearchCV(make_search(str(tmp_path / "r.log"), None, 0.0).estimator,
                                  GRID, cv=3).fit(X, y)
    assert_same_results(outcome["search"], reference)
    assert np.isfinite(outcome["search"].best_score_)


@pytest.mark.parametrize("bad", ["dir"])
def test_checkpoint_must_be_a_file(tmp_path, bad):
    with pytest.raises(ValueError, match="is a directory"):
        make_search(str(tmp_path / "log"), str(tmp_path), 0.0).fit(*digits())


# ---------------------------------------------------------------------- adaptive searches
class LoggedSGD(SGDClassifier):
    """SGDClassifier that appends a line per ``partial_fit`` call to ``log`` and takes
    ``delay`` seconds more, so an adaptive search lasts long enough to be interrupted."""

    def __init__(self, alpha: float = 1e-4, log: str = "", delay: float = 0.0) -> None:
        super().__init__(alpha=alpha, random_state=0)
        self.log = log
        self.delay = delay

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        time.sleep(self.delay)
        super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)
        with open(self.log, "a") as f:
            f.write(f"{self.alpha}\n")
        return self


def make_halving(log: str, checkpoint: str | None, delay: float):
    from distml.estimators.model_selection import SuccessiveHalvingSearchCV
    return SuccessiveHalvingSearchCV(
        LoggedSGD(log=log, delay=delay), {"alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
        n_initial_parameters=6, n_initial_iter=2, max_iter=8, aggressiveness=2, n_blocks=4,
        random_state=0, checkpoint=checkpoint)


def halving_data():
    X, y = load_digits(return_X_y=True)
    return X[:600], (y[:600] > 4).astype(int)


HALVING_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
import numpy as np
from distml import Client
from test_search_resume import halving_data, make_halving
with Client({address!r}):
    make_halving({log!r}, {checkpoint!r}, 0.25).fit(*halving_data(), classes=np.array([0, 1]))
"""


def test_adaptive_search_killed_mid_search_resumes_from_checkpoint(tmp_path):
    """SuccessiveHalvingSearchCV with a checkpoint, its client SIGKILLed after a few models
    were scored: the rerun makes only the partial_fit calls no recorded model had made, and
    ends with the results of a search never interrupted."""
    log, checkpoint = tmp_path / "calls.log", tmp_path / "halving.ckpt"
    classes = np.array([0, 1])
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        kill_when_recorded(HALVING_SCRIPT, cluster, log, checkpoint, 4)
        recorded = [json.loads(line)["result"] for line in lines(checkpoint)]
        assert 4 <= len(recorded) < 6 + 3 + 1
        reached = {}  # model id -> most calls of a recorded (scored) state
        for r in recorded:
            reached[r["model_id"]] = max(reached.get(r["model_id"], 0), r["calls"])
        calls_before = len(lines(log))
        with Client(cluster):  # the same arguments as the killed run
            resumed = make_halving(str(log), str(checkpoint), 0.25).fit(*halving_data(),
                                                                       classes=classes)
        new_calls = len(lines(log)) - calls_before
    final = resumed.cv_results_["partial_fit_calls"]
    assert new_calls == sum(int(c) - reached.get(m, 0) for m, c in enumerate(final))
    assert len(lines(checkpoint)) == 6 + 3 + 1
    reference = make_halving(str(tmp_path / "ref.log"), None, 0.0).fit(*halving_data(),
                                                                        classes=classes)
    np.testing.assert_array_equal(resumed.cv_results_["test_score"],
                                  reference.cv_results_["test_score"])
    np.testing.assert_array_equal(final, reference.cv_results_["partial_fit_calls"])
    assert resumed.best_params_ == reference.best_params_


def test_adaptive_checkpoint_needs_an_int_random_state(tmp_path):
    search = make_halving(str(tmp_path / "log"), str(tmp_path / "ckpt"), 0.0)
    search.set_params(random_state=None)
    with pytest.raises(ValueError, match="checkpoint needs an int random_state"):
        search.fit(*halving_data(), classes=np.array([0, 1]))
