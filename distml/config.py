"""One configuration object: defaults, overridden by ``DISTML_*`` environment variables,
overridden by keyword arguments.

Every tunable of the runtime lives here so that a user can find them all in one place and set them
the same way for the local cluster, the CLI and tests.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "DISTML_"


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass
class Config:
    """Runtime settings. Build with :meth:`Config.load` to apply the environment."""

    #: Shared secret that authenticates every connection (HMAC handshake). ``None`` means "make
    #: one" for a local cluster and "read the default secret file" for the CLI.
    secret: str | None = field(default=None, repr=False)
    #: Interface the scheduler and workers listen on. Loopback unless set.
    host: str = "127.0.0.1"
    #: Largest frame accepted from an authenticated peer, in bytes.
    max_frame_bytes: int = 2**31
    #: Largest message header (msgpack) accepted, in bytes.
    max_header_bytes: int = 256 * 2**20
    #: Most frames one message may carry.
    max_frames: int = 1_000_000
    #: Seconds a connection attempt (TCP connect plus handshake) may take.
    connect_timeout: float = 10.0
    #: Seconds a worker (or client) keeps trying to reach a scheduler that went away.
    scheduler_reconnect_timeout: float = 60.0
    #: Seconds a result declared by a worker waits for a client to claim it after a scheduler
    #: restart, before it is freed.
    unclaimed_timeout: float = 60.0
    #: Seconds between worker heartbeats.
    heartbeat_interval: float = 1.0
    #: Seconds without a heartbeat after which the scheduler declares a worker lost.
    worker_ttl: float = 30.0
    #: Seconds a busy batched stream waits to gather more messages before sending.
    batch_interval: float = 0.002
    #: Seconds of estimated work the scheduler queues on a worker per thread.
    worker_saturation_seconds: float = 0.05
    #: Most tasks queued on one worker per thread, whatever their estimated duration.
    max_tasks_per_thread: int = 1000
    #: Duration assumed for a task whose kind has never run, in seconds.
    unknown_task_duration: float = 0.5
    #: Bytes per second assumed for moving a result between workers, when the scheduler weighs
    #: where a task runs (and whether to steal it) against the time its inputs take to move;
    #: once workers have timed transfers of 1 MB or more, their measurements are used instead.
    transfer_bandwidth: float = 100e6
    #: Results up to this size (pickled) travel with the completion message to the clients that
    #: want them, saving a fetch from the worker.
    inline_result_bytes: int = 16 * 1024
    #: Bytes of small results (those that travel inline, up to ``inline_result_bytes``) the
    #: scheduler keeps copies of while other tasks depend on them: when their worker dies they
    #: are handed to a live worker instead of being recomputed with everything under them.
    #: Oldest dropped first; 0 keeps none.
    result_copies_bytes: int = 64 * 2**20
    #: Fractions of a worker's memory limit: results past ``target`` (by their estimated size)
    #: go to disk, least recently used first; past ``spill`` (measured resident memory) more go;
    #: past ``pause`` the worker starts no new tasks; past ``terminate`` its nanny restarts it.
    memory_target_fraction: float = 0.6
    memory_spill_fraction: float = 0.7
    memory_pause_fraction: float = 0.8
    memory_terminate_fraction: float = 0.95
    #: Each nanny keeps a spare worker process started and idle (imports done, about 40 MiB),
    #: so that a dead worker is replaced in tens of milliseconds instead of about 0.2 s.
    worker_spare: bool = True
    #: Seconds between measurements of a worker's resident memory.
    memory_monitor_interval: float = 0.1
    #: Folder for spilled results (default: a fresh temporary folder per worker).
    local_directory: str | None = None
    #: Transitions kept for ``client.story``.
    transition_log_length: int = 100_000
    #: How many times a task may be on a worker that dies before it is failed.
    allowed_failures: int = 3
    #: Seconds the scheduler may have no worker at all while tasks wait, before they fail with
    #: ``NoWorkersError``; ``None`` waits for workers to join (as for a scheduler started before
    #: its workers). Tasks fail at once, whatever this says, when the last worker is gone and
    #: every nanny that ran one has given up restarting it.
    no_workers_timeout: float | None = None
    #: Progress bars (``distml.progress``, long computes, fits, searches) on interactive
    #: terminals; ``DISTML_PROGRESS=0`` turns them off.
    progress: bool = True
    #: The scheduler serves a dashboard over HTTP (token-protected, on the scheduler's
    #: interface) on ``dashboard_port`` (0: a free port).
    dashboard: bool = True
    dashboard_port: int = 0
    #: Finished tasks whose timings the scheduler keeps for the task stream and reports.
    task_stream_length: int = 100_000
    #: TLS (``tls://`` addresses): this peer's certificate and key (PEM files), and the CA file
    #: that peers' certificates must chain to. With all three, both sides are verified.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca_file: str | None = None
    #: TLS contexts, built from the files above unless given directly.
    ssl_server: ssl.SSLContext | None = field(default=None, repr=False)
    ssl_client: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.ssl_server is None and self.tls_cert and self.tls_key:
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_ca_file:
                server.load_verify_locations(self.tls_ca_file)
                server.verify_mode = ssl.CERT_REQUIRED
            self.ssl_server = server
        if self.ssl_client is None and self.tls_ca_file:
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca_file)
            if self.tls_cert and self.tls_key:
                client.load_cert_chain(self.tls_cert, self.tls_key)
            self.ssl_client = client

    @property
    def scheme(self) -> str:
        """``tls`` when this configuration can serve TLS, else ``tcp``."""
        return "tls" if self.ssl_server is not None else "tcp"

    @classmethod
    def load(cls, **overrides: Any) -> "Config":
        """Defaults, then ``DISTML_<FIELD>`` environment variables, then ``overrides``."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, spec in known.items():
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None or name.startswith("ssl_"):
                continue
            values[name] = _coerce(name, spec.type, raw)
        unknown = set(overrides) - set(known)
        if unknown:
            raise TypeError(f"unknown distml config option(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as ``DISTML_*`` variables, for processes started from this one (the
        secret and the TLS contexts are left to the caller)."""
        env = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "secret" or spec.name.startswith("ssl_") or value is None:
                continue
            text = ("1" if value else "0") if isinstance(value, bool) else str(value)
            env[ENV_PREFIX + spec.name.upper()] = text
        return env

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def secret_bytes(self) -> bytes:
        if not self.secret:
            raise ValueError("no shared secret configured")
        return self.secret.encode()


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    text = str(type_name)
    try:
        if text.startswith("bool"):
            return _parse_bool(raw)
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None
    return raw


def new_secret() -> str:
    """A fresh random secret, 256 bits, as text."""
    return secrets.token_hex(32)


def default_secret_file() -> Path:
    return Path(os.environ.get("DISTML_SECRET_FILE", Path.home() / ".config" / "distml" / "secret"))


def read_secret_file(path: str | os.PathLike[str]) -> str:
    text = Path(path).read_text().strip()
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return text


def write_secret_file(path: str | os.PathLike[str], secret: str) -> None:
    """Write ``secret`` readable by the owner only."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
