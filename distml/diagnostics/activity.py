"""Activities: what a long client-side job (a fit, a search) says about itself while it runs.

``report_activity("search", done=12, total=48, best_score=0.93)`` sends a small status from the
default client to the scheduler, which keeps the latest status per (client, name) in a bounded
board that the dashboard shows. Statuses are plain data (names, numbers, short strings), checked
on both ends: the scheduler never receives anything it would have to unpickle.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from distml.errors import ProtocolError

#: Limits on one status, checked by the client (``ValueError``/``TypeError``) and again by the
#: scheduler (``ProtocolError``: only a hostile peer gets past the client's checks).
MAX_NAME_CHARS = 100
MAX_FIELDS = 32
MAX_FIELD_NAME_CHARS = 64
MAX_TEXT_CHARS = 200
#: Activities the scheduler keeps; the least recently updated is dropped past this.
MAX_ACTIVITIES = 256

_SCALARS = (bool, int, float, str, type(None))


def check_status(name: Any, fields: Any, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the problem unless ``name``/``fields`` make a valid status."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise error(f"activity name must be a non-empty string of at most {MAX_NAME_CHARS} "
                    f"characters, got {name!r:.120}")
    if not isinstance(fields, dict):
        raise error(f"activity fields must be a dict, got {type(fields).__name__}")
    if len(fields) > MAX_FIELDS:
        raise error(f"activity {name!r}: {len(fields)} fields, at most {MAX_FIELDS} allowed")
    for key, value in fields.items():
        if not isinstance(key, str) or not key or len(key) > MAX_FIELD_NAME_CHARS:
            raise error(f"activity {name!r}: field names must be strings of at most "
                        f"{MAX_FIELD_NAME_CHARS} characters, got {key!r:.80}")
        if not isinstance(value, _SCALARS):
            raise error(f"activity {name!r}: field {key!r} must be a number, string, bool or "
                        f"None, not {type(value).__name__}")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise error(f"activity {name!r}: field {key!r} is longer than {MAX_TEXT_CHARS} "
                        f"characters")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise error(f"activity {name!r}: field {key!r} does not fit in 64 bits")


def _plain(value: Any) -> Any:
    """Numbers from numpy and the like as Python scalars (so users can pass ``np.float64``)."""
    if isinstance(value, _SCALARS):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError):
            return value
    return value


def report_activity(name: str, **fields: Any) -> None:
    """Tell the cluster's dashboard how a long job is going, e.g.
    ``report_activity("search", done=12, total=48, best_score=0.93)``.

    Sent from the default client (see :func:`distml.default_client`), or from inside a task
    through its worker's client; without either it does nothing, so library code can call it
    unconditionally. Field values must be numbers, strings
    (up to 200 characters), bools or None. ``finish_activity(name)`` removes it.
    """
    fields = {key: _plain(value) for key, value in fields.items()}
    for key, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            fields[key] = None if math.isnan(value) else str(value)
    check_status(name, fields)
    _send({"op": "activity", "name": name, "fields": fields})


def finish_activity(name: str) -> None:
    """Remove the activity ``name`` from the dashboard (a no-op without a default client)."""
    check_status(name, {})
    _send({"op": "activity", "name": name, "fields": None})


def _send(msg: dict[str, Any]) -> None:
    """Through the default client; inside a task, through its worker's client."""
    from distml.client.client import default_client
    from distml.worker.context import current_task, get_client

    client = default_client()
    if client is None and current_task() is not None:
        client = get_client()
    if client is not None:
        client._send(msg)


class ActivityBoard:
    """The scheduler's latest status per (client, activity name); bounded."""

    def __init__(self, limit: int = MAX_ACTIVITIES):
        self.limit = limit
        self._entries: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def update(self, client_id: str, msg: dict[str, Any]) -> None:
        """Apply one ``activity`` message from ``client_id`` (checked: ``ProtocolError``)."""
        name, fields = msg.get("name"), msg.get("fields")
        slot = (client_id, name)
        if fields is None:
            check_status(name, {}, ProtocolError)
            self._entries.pop(slot, None)
            return
        check_status(name, fields, ProtocolError)
        now = time.time()
        entry = self._entries.pop(slot, None)
        started = entry["started"] if entry is not None else now
        self._entries[slot] = {"name": name, "client": client_id, "fields": dict(fields),
                               "started": started, "updated": now}
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def remove_client(self, client_id: str) -> None:
        for slot in [s for s in self._entries if s[0] == client_id]:
            del self._entries[slot]

    def snapshot(self) -> list[dict[str, Any]]:
        """Plain copies, most recently updated first."""
        return [{**entry, "fields": dict(entry["fields"])}
                for entry in reversed(self._entries.values())]

    def __len__(self) -> int:
        return len(self._entries)
