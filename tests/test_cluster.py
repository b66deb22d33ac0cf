"""Clusters started from the command line, killed workers, and peers that break the protocol."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from distml import Client, Config, LocalCluster
from distml.batched import unbatch
from distml.comm import connect
from distml.config import Config

from conftest import wait_until

SECRET = "cli-test-secret"


def inc(x):
    return x + 1


def slow_inc(x, delay=0.05):
    time.sleep(delay)
    return x + 1


def _stop(procs):
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cli_env(tmp_path):
    """A secret file, and an environment in which `python -m distml` finds this checkout."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    env.pop("DISTML_SECRET", None)
    return secret_file, env


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "distml", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def cli_cluster(tmp_path):
    secret_file, env = _cli_env(tmp_path)
    scheduler = _start(["scheduler", "--port", "0", "--secret-file", str(secret_file)], env)
    procs = [scheduler]
    try:
        line = scheduler.stdout.readline()
        assert line.startswith("distml scheduler at "), line + scheduler.stderr.read()
        address = line.split()[-1]
        for i in range(2):
            procs.append(_start(["worker", address, "--nthreads", "1", "--name", f"w{i}",
                                 "--secret-file", str(secret_file)], env))
        yield address, procs
    finally:
        _stop(procs)


def test_cli_cluster_behaves_like_a_local_one(cli_cluster):
    address, procs = cli_cluster
    with Client(address, secret=SECRET) as client:
        client.wait_for_workers(2, timeout=20)
        assert sorted(w["name"] for w in client.scheduler_info()["workers"].values()) == \
            ["w0", "w1"]
        futures = client.map(inc, range(100))
        assert client.gather(futures) == list(range(1, 101))
        assert client.submit(sum, futures).result() == sum(range(1, 101))
    with pytest.raises(Exception, match="authentication|secret|refused"):
        Client(address, secret="wrong", timeout=3)


def test_scheduler_never_loads_pickle_machinery():
    """The scheduler runs without cloudpickle or numpy: it cannot unpickle user objects, and
    needs none of the user's environment."""
    code = ("import sys; import distml.scheduler.server, distml.cli; "
            "print(sorted(m for m in ('cloudpickle', 'numpy', 'distml.protocol.serialize') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_authenticated_peer_with_bad_messages_is_dropped_and_others_served():
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        async def misbehave():
            comm = await connect(cluster.scheduler_address, cluster.config)
            await comm.send({"op": "register-client", "client": "client-rogue"})
            await comm.recv()
            await comm.send({"op": "update-graph", "tasks": {"k": "not-a-dict"}, "keys": ["k"]})
            header, _ = await comm.recv()
            await comm.close()
            return [msg for msg, _ in unbatch(header)]

        replies = client._loop.run(misbehave())
        assert any(r["op"] == "error" and "update-graph" in r["message"] for r in replies)
        async def unknown_first_op():
            comm = await connect(cluster.scheduler_address, cluster.config)
            await comm.send({"op": "rm-rf"})
            header, _ = await comm.recv()
            return header


        assert "unknown operation" in client._loop.run(unknown_first_op())["message"]
        assert client.submit(inc, 1).result() == 2  # everyone else is still served


def test_killed_worker_work_is_recomputed():
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        futures = client.map(slow_inc, range(40), delay=0.05)
        wait_until(lambda: sum(len(w.has_what) for w in
                               cluster.scheduler.state.workers.values()) >= 4)
        cluster.supervisors[0].kill(signal.SIGKILL)  # its nanny starts a new one
        assert client.gather(futures, timeout=60) == list(range(1, 41))
        wait_until(lambda: len(cluster.scheduler.state.workers) == 2)
        assert cluster.supervisors[0].restarts == 1
        story = [entry for f in futures for entry in client.story(f)]
        assert any("remove_worker" in cause for *_, cause in story)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_killed_and_restarted_mid_computation(tmp_path):
    """Workers keep their results and re-register them; the client reconnects and resubmits;
    the result equals the undisturbed one."""
    secret_file, env = _cli_env(tmp_path)
    port = _free_port()
    scheduler_args = ["scheduler", "--port", str(port), "--secret-file", str(secret_file)]
    procs = [_start(scheduler_args, env)]
    try:
        assert procs[0].stdout.readline().startswith("distml scheduler at")
        address = f"tcp://127.0.0.1:{port}"
        for i in range(2):
            procs.append(_start(["worker", address, "--nthreads", "1", "--secret-file",
                                 str(secret_file)], env))
        with Client(address, secret=SECRET, scheduler_reconnect_timeout=30) as client:
            client.wait_for_workers(2, timeout=20)
            futures = client.map(slow_inc, range(60), delay=0.05)
            total = client.submit(sum, futures)
            wait_until(lambda: sum(f.done() for f in futures) >= 10)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            procs[0] = _start(scheduler_args, env)
            assert procs[0].stdout.readline().startswith("distml scheduler at")
            assert total.result(timeout=60) == sum(range(1, 61))
            assert client.gather(futures) == list(range(1, 61))
    finally:
        _stop(procs)


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="needs openssl")
def test_tls_end_to_end_with_user_certificates(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    config = Config.load(tls_cert=str(cert), tls_key=str(key), tls_ca_file=str(cert))
    with LocalCluster(n_workers=2, config=config) as cluster, Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tls://")
        assert all(w.startswith("tls://") for w in cluster.workers)
        futures = client.map(inc, range(20))
        assert client.submit(sum, futures).result() == sum(range(1, 21))  # peer transfer too
        plain = Config.load(secret=cluster.config.secret, connect_timeout=1)
        with pytest.raises(Exception):  # no TLS context: refused, never reaches the handshake
            Client(cluster.scheduler_address.replace("tls://", "tcp://"), config=plain,
                   timeout=1)


def test_worker_exits_when_its_scheduler_does_not_come_back(tmp_path):
    secret_file, env = _cli_env(tmp_path)
    env["DISTML_SCHEDULER_RECONNECT_TIMEOUT"] = "1"
    scheduler = _start(["scheduler", "--port", "0", "--no-dashboard", "--secret-file",
                        str(secret_file)], env)
    procs = [scheduler]
    try:
        address = scheduler.stdout.readline().split()[-1]
        worker = _start(["worker", address, "--no-nanny", "--nthreads", "1", "--secret-file",
                         str(secret_file)], env)
        procs.append(worker)
        assert worker.stdout.readline().startswith("distml worker at")
        scheduler.kill()
        assert worker.wait(30) == 0  # gave up reconnecting after 1 s, closed, and exited
        assert "could not reconnect" in worker.stderr.read()
    finally:
        _stop(procs)


def test_local_cluster_workers_exit_when_their_process_is_killed():
    """The workers' nanny lives in the user's process; SIGKILL it and they must not linger."""
    import psutil

    code = ("from distml import LocalCluster\nimport time\n"
            "cluster = LocalCluster(n_workers=2)\nprint('ready', flush=True)\ntime.sleep(300)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    owner = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        workers = psutil.Process(owner.pid).children()
        assert len(workers) == 2
        owner.kill()
        owner.wait()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive
    finally:
        owner.kill()


def test_local_cluster_settings_reach_its_worker_processes():
    config = Config.load(memory_spill_fraction=0.55, allowed_failures=5)
    with LocalCluster(n_workers=1, config=config) as cluster, Client(cluster) as client:
        seen = client.run(lambda distml_worker: (distml_worker.config.memory_spill_fraction,
                                                 distml_worker.config.allowed_failures))
        assert list(seen.values()) == [(0.55, 5)]
