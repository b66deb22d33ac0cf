"""A scheduler, two workers and a client on four "hosts": network namespaces on one bridge, with
5 ms of latency each way, started from the command line as a user would on real machines.

The addresses (10.231.7.0/24) exist only inside namespaces this test creates and deletes: no
packet leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from netns import Network, Unavailable

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the venv's python, by absolute path
HOSTS = {"sched": "10.231.7.1", "w1": "10.231.7.2", "w2": "10.231.7.3",
         "client": "10.231.7.10"}
PORT = 8786

CLIENT_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from distml import Client

    def inc(x):
        time.sleep(0.02)
        return x + 1

    def total(xs):
        return sum(xs)

    def use(a, i):
        time.sleep(0.2)
        return float(a[i::7].sum()), os.getpid()

    address, secret_file = sys.argv[1], sys.argv[2]
    out = {}
    started = time.perf_counter()
    with Client(address, secret=open(secret_file).read().strip(), timeout=20) as client:
        client.wait_for_workers(2, timeout=20)
        out["workers"] = sorted(client.scheduler_info()["workers"])
        out["pids"] = client.run(os.getpid)
        futures = client.map(inc, range(50))
        out["map"] = client.gather(futures, timeout=30)
        out["map_holders"] = sorted({w for ws in client.who_has(futures).values() for w in ws})
        out["sum"] = client.submit(total, futures).result(timeout=30)
        array = np.arange(500_000, dtype="f8")  # 4 MB
        [scattered] = client.scatter([array], workers=[out["workers"][0]])
        out["scattered_on"] = client.who_has([scattered])[scattered.key]
        uses = [client.submit(use, scattered, i) for i in range(10)]
        got = client.gather(uses, timeout=30)
        out["uses"] = [value for value, _ in got]
        out["expected_uses"] = [float(array[i::7].sum()) for i in range(10)]
        out["use_pids"] = sorted({pid for _, pid in got})
        out["array_holders"] = client.who_has([scattered])[scattered.key]
    out["seconds"] = time.perf_counter() - started
    print("RESULT " + json.dumps(out), flush=True)
""")


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- {path.name}\n" + "\n".join(lines[-n:])


def test_three_hosts_with_latency(tmp_path):
    started = time.monotonic()
    secret_file = tmp_path / "secret"
    secret_file.write_text("multihost-test-secret\n")
    secret_file.chmod(0o600)
    script = tmp_path / "client_script.py"
    script.write_text(CLIENT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTML_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DISTML_LOG_LEVEL"] = "INFO"
    scheduler_address = f"tcp://{HOSTS['sched']}:{PORT}"
    logs = [tmp_path / f"{name}.log" for name in ("scheduler", "w1", "w2")]

    network = Network(HOSTS)
    try:
        network.__enter__()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        latency = network.add_latency("5ms")
        with open(logs[0], "w") as log:
            scheduler = network.popen(
                "sched", [PYTHON, "-m", "distml", "scheduler", "--host", HOSTS["sched"],
                          "--port", str(PORT), "--secret-file", str(secret_file)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        for name, log_path in zip(("w1", "w2"), logs[1:]):
            with open(log_path, "w") as log:
                network.popen(
                    name, [PYTHON, "-m", "distml", "worker", scheduler_address, "--host",
                           HOSTS[name], "--nthreads", "1", "--name", name, "--memory-limit",
                           "1GB", "--secret-file", str(secret_file)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        proc = network.run("client", [PYTHON, str(script), scheduler_address, str(secret_file)],
                           timeout=45, env=env, capture_output=True, text=True, cwd=tmp_path)
        diagnostics = "\n".join([proc.stdout[-3000:], proc.stderr[-3000:],
                                 *(_tail(p) for p in logs)])
        assert proc.returncode == 0, diagnostics
        assert scheduler.poll() is None, diagnostics
        [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        out = json.loads(line[len("RESULT "):])

        # the workers listen on their own namespace's address, not on loopback
        assert [w.rsplit(":", 1)[0] for w in out["workers"]] == \
            [f"tcp://{HOSTS['w1']}", f"tcp://{HOSTS['w2']}"], out["workers"]
        assert sorted(out["pids"]) == out["workers"]
        assert out["map"] == list(range(1, 51))
        # the results were spread over both hosts, so the sum fetched across namespaces
        assert out["map_holders"] == out["workers"], out["map_holders"]
        assert out["sum"] == sum(range(1, 51))
        assert out["scattered_on"] == [out["workers"][0]]
        assert out["uses"] == out["expected_uses"]
        # the 4 MB array was used on both hosts: the second fetched it from the first
        assert out["use_pids"] == sorted(out["pids"].values()), (out["use_pids"], out["pids"])
        assert sorted(out["array_holders"]) == out["workers"], out["array_holders"]
        if not latency:
            warnings.warn(f"the multi-host test ran without added latency: {network.latency}")
    finally:
        network.__exit__(*sys.exc_info())
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in network.all_namespaces if ns in listed], listed
    assert time.monotonic() - started < 60
