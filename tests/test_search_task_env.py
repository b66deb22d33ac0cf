"""Search tasks on a worker: mid-size buffers come from the heap while they run, and the
worker's configured allocator thresholds are back once they end (page faults counted)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource
    import numpy as np
    from distml.estimators.model_selection._task_env import heap_buffers, on_worker

    def faults(rounds=200):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            a = np.ones(50_000)          # 400 kB: above the worker's 64 kB mmap threshold
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    outside = faults()
    with heap_buffers():
        inside = faults()
    after = faults()
    in_task = on_worker(faults)
    print(outside, inside, after, in_task)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_search_tasks_reuse_heap_buffers_and_restore_thresholds():
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    outside, inside, after, in_task = map(int, out)
    # every 400 kB array is a fresh mmap outside (about 100 pages faulted in each time) ...
    assert outside >= 200 * 50
    # ... and reused heap memory inside, in the context manager or a search task
    assert inside < outside / 10 and in_task < outside / 10
    # the configured threshold is back afterwards
    assert after >= 200 * 50


def test_unconfigured_process_left_alone():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    outside, inside, after, in_task = map(int, out)
    # glibc's dynamic threshold already keeps such buffers on the heap: nothing to change
    assert outside < 200 * 50 and after < 200 * 50
