"""Post-mortems: ``client.dump_cluster_state(path)`` writes what the scheduler and every worker
know (tasks and their states, who holds what, recent transitions and timings, memory) as one JSON
file, to read after a job hung or failed, or to attach to a bug report.

Only plain data is written: no task payloads, no results, no pickled exceptions (their text is),
and no secrets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distml.client.client import Client
    from distml.scheduler.server import Scheduler

#: Newest transitions and task records included (the scheduler may keep more).
DUMP_TRANSITIONS = 20_000
DUMP_TASK_RECORDS = 20_000
_SKIPPED_CONFIG = ("secret", "ssl_server", "ssl_client")


def _task(ts: Any) -> dict[str, Any]:
    return {
        "state": ts.state, "prefix": ts.prefix, "priority": list(ts.priority),
        "dependencies": sorted(d.key for d in ts.dependencies),
        "dependents": len(ts.dependents), "waiting_on": sorted(d.key for d in ts.waiting_on),
        "who_has": sorted(ws.address for ws in ts.who_has),
        "processing_on": ts.processing_on.address if ts.processing_on is not None else None,
        "started": ts.started, "who_wants": sorted(cs.id for cs in ts.who_wants),
        "nbytes": ts.nbytes, "retries": ts.retries, "suspicious": ts.suspicious,
        "error": ts.exception_text or None, "erred_key": ts.erred_key,
        "erred_kind": ts.erred_kind if ts.exception_text else None,
    }


def scheduler_state(scheduler: "Scheduler") -> dict[str, Any]:
    """Everything the scheduler knows, as plain data (runs on the scheduler's loop)."""
    state = scheduler.state
    config = {f.name: getattr(scheduler.config, f.name)
              for f in dataclasses.fields(scheduler.config) if f.name not in _SKIPPED_CONFIG}
    log = list(state.transition_log)[-DUMP_TRANSITIONS:]
    return {
        "address": scheduler.address,
        "time": time.time(),
        "started": scheduler.started,
        "config": config,
        "workers": {ws.address: {
            "name": ws.name, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "paused": ws.paused, "metrics": dict(ws.metrics), "occupancy": ws.occupancy,
            "processing": sorted(ts.key for ts in ws.processing),
            "long_running": sorted(ts.key for ts in ws.long_running),
            "has_what": len(ws.has_what), "nbytes": ws.nbytes,
        } for ws in state.workers.values()},
        "clients": {cs.id: {"wants": len(cs.wants)} for cs in state.clients.values()},
        "tasks": {key: _task(ts) for key, ts in state.tasks.items()},
        "task_counts": state.task_counts(),
        "durations": dict(state.durations),
        "unclaimed": sorted(state.unclaimed),
        "transition_log": [list(entry) for entry in log],
        "task_stream": [list(r) for r in scheduler.recorder.recent_tasks(DUMP_TASK_RECORDS)],
        "activities": scheduler.recorder.activities.snapshot(),
    }


def worker_state(distml_worker: Any) -> dict[str, Any]:
    """What one worker knows (``client.run`` calls this on every worker)."""
    worker = distml_worker
    machine = worker.state
    for _ in range(5):  # runs beside the worker's loop: retry if a dict changes under us
        try:
            tasks = {key: {"state": t.state, "dependencies": list(t.dependencies),
                           "missing": sorted(t.missing)}
                     for key, t in list(machine.tasks.items())}
            data = worker.data
            return {
                "address": worker.address, "name": worker.name, "nthreads": worker.nthreads,
                "memory_limit": worker.memory_limit, "memory": worker.memory_report(),
                "peak_rss": worker.peak_rss, "paused": machine.paused,
                "executing": sorted(machine.executing), "seceded": sorted(machine.seceded),
                "tasks": tasks, "in_memory": dict(machine.in_memory),
                "spilled_keys": sorted(data.slow), "spill_count": data.spill_count,
                "unspill_count": data.unspill_count, "pid": os.getpid(),
            }
        except RuntimeError:
            continue
    raise RuntimeError(f"worker {worker.address}: state kept changing while being read")


def dump_cluster_state(client: "Client", path: str | os.PathLike[str]) -> Path:
    """Write the scheduler's and every worker's state to ``path`` (JSON); returns the path.

    A worker that cannot answer is recorded with the error instead of failing the dump."""
    target = Path(path)
    scheduler = client._sync(client._request({"op": "dump-state"}), client.timeout)
    addresses = sorted(scheduler["workers"])
    try:
        workers: dict[str, Any] = client.run(worker_state, workers=addresses) if addresses else {}
    except Exception:  # noqa: BLE001 - ask one by one to learn which worker failed
        workers = {}
        for address in addresses:
            try:
                workers[address] = client.run(worker_state, workers=[address])[address]
            except Exception as exc:  # noqa: BLE001 - a post-mortem must not die with the patient
                workers[address] = {"error": f"{type(exc).__name__}: {exc}"}
    document = {"distml_cluster_state": 1, "client": client.id, "scheduler": scheduler,
                "workers": workers}
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w") as handle:
        json.dump(document, handle, indent=1, default=_plain)
    return target


def _plain(value: Any) -> Any:
    """msgpack hands back bytes and tuples; JSON wants text and lists."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
