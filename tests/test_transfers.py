"""What the runtime knows of the data it moves: sizes of results (``sizeof``) and the bandwidth
workers measure on their fetches, which the scheduler uses in place of its configured guess."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from conftest import wait_until
from distml import Client, LocalCluster
from distml.config import Config
from distml.sizeof import sizeof
from distml.worker.transfers import MIN_BYTES, TransferMeter
from test_scheduler_state import A, B, _holder_with_backlog, MB40, ops


@dataclass
class Pair:
    train: np.ndarray
    test: np.ndarray


class Slotted:
    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


def test_sizeof_counts_what_objects_hold():
    assert sizeof(Pair(np.zeros(1000), np.zeros(500))) >= 12_000
    assert sizeof(Slotted(np.zeros(1000))) >= 8_000
    model = LogisticRegression().fit(np.random.default_rng(0).normal(size=(300, 200)),
                                     np.arange(300) % 10)
    assert sizeof(model) >= model.coef_.nbytes
    ring = Pair(np.zeros(10), None)
    ring.test = ring  # a cycle ends at the depth limit
    assert 80 <= sizeof(ring) < 10_000
    assert sizeof(np.ndarray) < 10_000 and sizeof(len) < 1000  # classes, builtins: shallow


def test_meter_averages_large_fetches_only():
    meter = TransferMeter()
    assert meter.report() == {}
    meter.record(MIN_BYTES - 1, 0.0001)  # latency, not throughput
    assert meter.report() == {}
    meter.record(10 * MIN_BYTES, 0.01)
    assert meter.report() == {"bandwidth": 1000 * MIN_BYTES}
    meter.record(10 * MIN_BYTES, 0.1)
    assert 100 * MIN_BYTES < meter.report()["bandwidth"] < 1000 * MIN_BYTES


def test_measured_bandwidth_replaces_the_guess_for_stealing():
    s = _holder_with_backlog(MB40, 6, duration=1.0)  # 0.4 s at the guessed 100 MB/s
    assert s.bandwidth() == Config().transfer_bandwidth
    assert ops(s.balance(), A, "steal") == []
    s = _holder_with_backlog(MB40, 6, duration=1.0)
    s.heartbeat(A, {"bandwidth": 2 * 10**9})
    s.heartbeat(B, {"bandwidth": 10**9})
    assert s.bandwidth() == 1.5e9  # 27 ms to move 40 MB: worth it for a second of work
    assert ops(s.balance(), A, "steal")
    s.remove_worker(A)
    assert s.bandwidth() == 1e9


def test_workers_report_the_bandwidth_of_their_fetches():
    config = Config.load().replace(heartbeat_interval=0.2)
    with LocalCluster(n_workers=2, threads_per_worker=1, config=config) as cluster, \
            Client(cluster) as client:
        first, second = list(client.nthreads())
        a = client.scatter(np.zeros(2 * MIN_BYTES // 8), workers=[first])
        b = client.scatter(np.ones(2 * MIN_BYTES // 8), workers=[second])
        assert client.submit(np.add, a, b).result().sum() == 2 * MIN_BYTES // 8
        workers = cluster.scheduler.state.workers
        wait_until(lambda: any(w.metrics.get("bandwidth") for w in workers.values()),
                   timeout=10, what=lambda: "a measured bandwidth in a heartbeat")
        assert cluster.scheduler.state.bandwidth() != Config().transfer_bandwidth
