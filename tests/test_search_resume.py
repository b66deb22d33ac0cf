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
from sklearn.linear_model import LogisticRegression
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
            f.write(f"{self.C}\n")
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


def test_client_killed_mid_search_resumes_from_checkpoint(tmp_path):
    log, checkpoint = tmp_path / "fits.log", tmp_path / "search.ckpt"
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        script = SCRIPT.format(paths=sys.path, address=cluster.scheduler_address, log=str(log),
                               checkpoint=str(checkpoint))
        env = {**os.environ, "DISTML_SECRET": cluster.config.secret}
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env)
        try:
            wait_until(lambda: len(lines(checkpoint)) >= 5 or proc.poll() is not None,
                       timeout=60, what=lambda: "five scored candidate-folds")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL, "the search finished before it was killed"
        # the cluster drops the dead client's work; a fit already running may still log
        wait_until(lambda: not cluster.scheduler.state.tasks, timeout=30,
                   what=lambda: f"tasks left: {list(cluster.scheduler.state.tasks)[:3]}")
        scored = len(lines(checkpoint))
        assert all(json.loads(line)["result"]["fit_error"] is None
                   for line in lines(checkpoint))
        fitted_before = len(lines(log))
        total = len(GRID["clf__C"]) * 3
        assert 5 <= scored < total
        with Client(cluster):  # the same arguments as the killed run
            resumed = make_search(str(log), str(checkpoint), 0.3).fit(*digits())
        refits = len(lines(log)) - fitted_before
        assert refits == total - scored + 1  # the unscored candidate-folds, and the refit
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
