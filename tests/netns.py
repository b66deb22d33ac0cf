"""Hosts on one machine: network namespaces joined by a bridge (in a namespace of its own), for
tests that need a scheduler and workers on distinct addresses.

Nothing touches the root namespace's network: the bridge, the veth pairs and the addresses live
in namespaces this module creates and deletes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from typing import Sequence


class Unavailable(Exception):
    """Namespaces cannot be made here (no iproute2, no privileges, no kernel support)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


class Network:
    """``hosts`` (name -> IPv4 address) on one /24, each in its own namespace, all on one
    bridge. Use as a context manager; everything is torn down on exit, even after errors."""

    def __init__(self, hosts: dict[str, str], prefix_len: int = 24):
        self.tag = secrets.token_hex(3)
        self.hosts = dict(hosts)
        self.prefix_len = prefix_len
        self.bridge_ns = f"distml-br-{self.tag}"
        self.namespaces = {name: f"distml-{self.tag}-{name}" for name in hosts}
        self.latency: str | None = None  # why no latency was added, or None if it was
        self._created: list[str] = []
        self._processes: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ setup
    def __enter__(self) -> "Network":
        if shutil.which("ip") is None:
            raise Unavailable("iproute2 not installed")
        try:
            self._add_namespace(self.bridge_ns)
        except RuntimeError as exc:
            raise Unavailable(f"cannot create network namespaces here: {exc}") from None
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _build(self) -> None:
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, (name, address) in enumerate(self.hosts.items()):
            ns = self.namespaces[name]
            self._add_namespace(ns)
            port = f"p{self.tag}{i}"  # the bridge side of this host's cable
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns",
                self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0")
            _ip("-n", self.bridge_ns, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{address}/{self.prefix_len}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def add_latency(self, delay: str = "5ms") -> bool:
        """``delay`` on every host's outgoing traffic (netem); False (and ``self.latency`` says
        why) if ``tc`` or netem is not available."""
        if shutil.which("tc") is None:
            self.latency = "tc not installed"
            return False
        for ns in self.namespaces.values():
            proc = _ip("netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                       "delay", delay, check=False)
            if proc.returncode != 0:
                self.latency = f"tc netem failed: {proc.stderr.strip()}"
                return False
        return True

    # ------------------------------------------------------------------ processes
    def popen(self, host: str, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Run ``cmd`` inside ``host``'s namespace (``ip netns exec`` execs it: the pid is the
        command's)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespaces[host], *cmd], **kwargs)
        self._processes.append(proc)
        return proc

    def run(self, host: str, cmd: Sequence[str], timeout: float, **kwargs
            ) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespaces[host], *cmd],
                              timeout=timeout, **kwargs)

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        for proc in self._processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self._processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # whatever those processes started (a worker's child under its nanny) is still in the
        # namespaces: only processes of this test can be there
        for ns in self._created:
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        errors = []
        for ns in reversed(self._created):  # deleting a namespace deletes its veth ends
            proc = _ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                errors.append(f"{ns}: {proc.stderr.strip()}")
        self._created.clear()
        if errors:
            raise RuntimeError(f"could not delete namespaces: {errors}")

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self.close()
        except RuntimeError:
            if exc_type is None:  # do not hide the error that got us here
                raise

    @property
    def all_namespaces(self) -> list[str]:
        return [self.bridge_ns, *self.namespaces.values()]
