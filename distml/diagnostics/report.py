"""``with distml.performance_report("report.html"): ...`` writes one standalone HTML page about
the work done inside the block: the task stream, worker memory over time and time per task kind.

The data comes from the scheduler when the block ends (its task records and memory samples for
the block's time window, see :mod:`distml.diagnostics.recorder`); the page needs no server and no
network: its styles, drawing code (shared with the dashboard) and data are inlined.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distml.scheduler.model import key_prefix

if TYPE_CHECKING:
    from distml.client.client import Client

STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"


class performance_report:  # noqa: N801 - used as a function-like context manager
    """Record the work done inside a ``with`` block and write it to ``filename`` as HTML.

    Uses the default client unless ``client`` is given. The page is written even when the block
    raises (a failed run is often the one worth a report); the exception propagates.
    """

    def __init__(self, filename: str | os.PathLike[str] = "distml-report.html", *,
                 client: "Client | None" = None, title: str | None = None):
        self.filename = Path(filename)
        self.title = title or "distml performance report"
        self._client = client
        self.client: "Client | None" = None
        self.start = 0.0
        self.data: dict[str, Any] | None = None

    def __enter__(self) -> "performance_report":
        from distml.client.client import default_client

        self.client = self._client or default_client()
        if self.client is None:
            raise ValueError("performance_report needs a client: create distml.Client() first "
                             "or pass client=")
        # the scheduler's clock (records are stamped with it): nothing is later than infinity
        self.start = self._history(float("inf"))["now"]
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        history = self._history(self.start)
        info = self.client.scheduler_info()
        self.data = report_data(history, info, self.title, time.perf_counter() - self._wall)
        write_report(self.filename, self.data)

    def _history(self, since: float) -> dict[str, Any]:
        client = self.client
        return client._sync(client._request({"op": "history", "since": since}), client.timeout)


def report_data(history: dict[str, Any], info: dict[str, Any], title: str,
                wall_seconds: float) -> dict[str, Any]:
    """The report's content: the scheduler's records plus totals per task kind and worker."""
    kinds: dict[str, dict[str, Any]] = {}
    per_worker: dict[str, dict[str, float]] = {}
    records = []
    for start, stop, worker, key, status in history["task_stream"]:
        prefix = key_prefix(key)
        records.append([start, stop, worker, key, prefix, status])
        seconds = max(0.0, stop - start)
        kind = kinds.setdefault(prefix, {"kind": prefix, "count": 0, "failed": 0, "seconds": 0.0,
                                         "max": 0.0})
        kind["count"] += 1
        kind["failed"] += status != "ok"
        kind["seconds"] += seconds
        kind["max"] = max(kind["max"], seconds)
        busy = per_worker.setdefault(worker, {"tasks": 0, "seconds": 0.0})
        busy["tasks"] += 1
        busy["seconds"] += seconds
    for kind in kinds.values():
        kind["mean"] = kind["seconds"] / kind["count"]
    workers = [{"address": address, "name": w["name"], "nthreads": w["nthreads"],
                "memory_limit": w["memory_limit"]} for address, w in info["workers"].items()]
    known = {w["address"] for w in workers}
    for address in sorted(set(per_worker) - known):  # left (or died) before the block ended
        workers.append({"address": address, "name": f"{address} (gone)", "nthreads": 1,
                        "memory_limit": 0})
    for w in workers:
        w.update(per_worker.get(w["address"], {"tasks": 0, "seconds": 0.0}))
    threads = sum(w["nthreads"] for w in workers)
    span = max(1e-9, history["now"] - history["since"])
    compute = sum(k["seconds"] for k in kinds.values())
    return {
        "title": title,
        "scheduler": info["address"],
        "start": history["since"],
        "end": history["now"],
        "wall_seconds": wall_seconds,
        "tasks": len(records),
        "failed": sum(k["failed"] for k in kinds.values()),
        "compute_seconds": compute,
        "busy_fraction": compute / (span * threads) if threads else 0.0,
        "task_stream_complete": history["task_stream_complete"],
        "kinds": sorted(kinds.values(), key=lambda k: -k["seconds"]),
        "workers": workers,
        "task_stream": records,
        "memory": history["memory"],
    }


def _script_json(value: Any) -> str:
    """JSON that cannot end its ``<script>`` element early (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_report(data: dict[str, Any]) -> str:
    """The standalone page for ``data`` (see :func:`report_data`)."""
    page = (STATIC / "report.html").read_text()
    parts = {
        "/*DISTML:CSS*/": (STATIC / "dashboard.css").read_text(),
        "/*DISTML:JS*/": (STATIC / "common.js").read_text() + "\n"
                         + (STATIC / "report.js").read_text(),
        "DISTML:TITLE": html.escape(data["title"]),
        "/*DISTML:DATA*/": _script_json(data),
    }
    for marker, text in parts.items():
        page = page.replace(marker, text)
    return page


def write_report(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
