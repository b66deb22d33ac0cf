"""Worker processes reuse mid-size buffers from the heap, and give the heap's free pages back to
the system after a spill (glibc; CI runs on Debian)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from distml.nanny import worker_process_environment
from distml.worker.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, release_free_memory

PROBE = """
import numpy as np, psutil
from distml.worker.allocator import release_free_memory
process = psutil.Process()
arrays = [np.ones(2**17) for _ in range(200)]  # 200 x 1 MiB, each under the mmap threshold
keep = arrays[-1]  # the newest pins the heap's top, so glibc cannot trim it on its own
del arrays
before = process.memory_info().rss
assert release_free_memory()
after = process.memory_info().rss
print(before - after)
"""


def test_worker_environment_fixes_the_mmap_and_trim_thresholds():
    env = worker_process_environment(["--nthreads", "2"])
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD)
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) == TRIM_THRESHOLD > MMAP_THRESHOLD
    assert env["OPENBLAS_NUM_THREADS"] == "2"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    env = {**os.environ, **worker_process_environment([])}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert int(out.stdout) > 150 * 2**20, out.stdout


def test_release_reports_whether_it_could():
    assert release_free_memory() is sys.platform.startswith("linux")
