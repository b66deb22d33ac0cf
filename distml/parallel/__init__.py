"""joblib on a distml cluster: the ``"distml"`` backend (see :mod:`distml.parallel.backend`).

``import distml`` registers the backend with joblib. Importing joblib costs a few tenths of a
second, which worker processes (they import ``distml`` too) should not pay: when joblib is not
imported yet, the registration waits for its import instead.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from typing import Any

BACKEND_NAME = "distml"

_lock = threading.Lock()


def _make_backend(**options: Any) -> Any:
    from distml.parallel.backend import DistmlBackend

    return DistmlBackend(**options)


def register() -> None:
    """Register the backend with joblib (importing joblib)."""
    from joblib import register_parallel_backend

    register_parallel_backend(BACKEND_NAME, _make_backend)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``joblib`` is about to be imported, wraps its loader so that
    the backend is registered right after joblib's own module has run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "joblib":
            return None
        with _lock:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            register()

        loader.exec_module = exec_module
        return spec


def register_when_imported() -> None:
    """Register now if joblib is imported, else as soon as it is."""
    if "joblib" in sys.modules:
        register()
        return
    with _lock:
        if not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _RegisterAfterImport())
