"""Prometheus text exposition (format 0.0.4) of a dashboard snapshot, for ``/metrics``."""

from __future__ import annotations

from typing import Any, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")


def render(data: dict[str, Any]) -> str:
    """The snapshot ``data`` (see :func:`distml.dashboard.snapshot.take`) as Prometheus text."""
    out = _Writer()
    sched = data["scheduler"]
    workers = data["workers"]
    out.metric("distml_scheduler_uptime_seconds", "gauge", "Seconds since the scheduler started.",
               [({}, sched["uptime"])])
    out.metric("distml_scheduler_clients", "gauge", "Clients connected to the scheduler.",
               [({}, sched["clients"])])
    out.metric("distml_scheduler_workers", "gauge", "Workers connected to the scheduler.",
               [({}, sched["workers"])])
    out.metric("distml_scheduler_tasks", "gauge", "Tasks the scheduler holds, by state.",
               [({"state": state}, n) for state, n in sorted(data["task_states"].items())])
    out.metric("distml_scheduler_tasks_recorded_total", "counter",
               "Task completions and failures reported by workers since the scheduler started.",
               [({}, sched["tasks_recorded"])])
    per_worker = [
        ("distml_worker_threads", "Threads of the worker.", "nthreads"),
        ("distml_worker_memory_limit_bytes", "Memory limit of the worker (0: none).",
         "memory_limit"),
        ("distml_worker_memory_bytes", "Resident memory of the worker process.", "memory"),
        ("distml_worker_managed_bytes", "Bytes of results the worker holds in memory.",
         "managed"),
        ("distml_worker_spilled_bytes", "Bytes of results the worker spilled to disk.",
         "spilled"),
        ("distml_worker_paused", "1 while the worker starts no new tasks (memory).", "paused"),
        ("distml_worker_executing_tasks", "Tasks the worker is running.", "executing"),
        ("distml_worker_processing_tasks", "Tasks sent to the worker and not yet done.",
         "processing"),
        ("distml_worker_keys", "Results the worker holds.", "keys"),
    ]
    for name, help_text, field in per_worker:
        out.metric(name, "gauge", help_text,
                   [({"worker": w["address"], "name": w["name"]}, w[field]) for w in workers])
    out.metric("distml_prefix_tasks", "gauge",
               "Tasks of each kind (key prefix) the scheduler holds, by progress.",
               [({"prefix": p["prefix"], "progress": part}, p[part]) for p in data["prefixes"]
                for part in ("done", "erred", "processing", "waiting")])
    out.metric("distml_activities", "gauge", "Activities (fits, searches) reported by clients.",
               [({}, len(data["activities"]))])
    own = data.get("dashboard", {"snapshots": 0, "snapshot_seconds": 0.0})
    out.metric("distml_dashboard_snapshots_total", "counter",
               "Snapshots of the scheduler's state taken for the dashboard.",
               [({}, own["snapshots"])])
    out.metric("distml_dashboard_snapshot_seconds_total", "counter",
               "CPU seconds of the scheduler's event loop spent taking dashboard snapshots.",
               [({}, own["snapshot_seconds"])])
    return "\n".join(out.lines) + "\n"
