"""distml: train machine-learning models on chunked data across a cluster of workers.

Public names are loaded on first use, so that a worker process (``python -m distml worker``)
starts without importing the client side.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Client": "distml.client.client",
    "default_client": "distml.client.client",
    "Future": "distml.client.future",
    "as_completed": "distml.client.future",
    "wait": "distml.client.future",
    "LocalCluster": "distml.cluster",
    "Config": "distml.config",
    "progress": "distml.diagnostics.progress",
    "report_activity": "distml.diagnostics.activity",
    "performance_report": "distml.diagnostics.report",
    **{name: "distml.worker.context" for name in (
        "get_client", "get_worker", "worker_client", "secede", "rejoin")},
    **{name: "distml.errors" for name in (
        "AuthenticationError", "CancelledError", "CommClosedError", "CycleError", "DistmlError",
        "GraphError", "KeyLostError", "ProtocolError", "RemoteTaskError", "SerializationError",
        "TimeoutError", "WorkerDiedError", "NoWorkersError")},
}

__all__ = sorted(_EXPORTS)

# joblib's backend "distml" (registered now if joblib is loaded, else when it is)
from distml.parallel import register_when_imported as _register_joblib_backend  # noqa: E402

_register_joblib_backend()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'distml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
