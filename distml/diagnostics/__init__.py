"""Seeing what the cluster does: progress bars, activity reports, the dashboard's data, reports.

The progress-bar names load tqdm on first use, so that the scheduler (which records task timings
through :mod:`distml.diagnostics.recorder`) does not pay for it. ``distml.progress`` (the blocking
bar over futures) lives in :mod:`distml.diagnostics.progress`; it is not re-exported here, where
``progress`` names that module.
"""

from __future__ import annotations

from typing import Any

from distml.diagnostics.activity import finish_activity, report_activity

_LAZY = ("ProgressBar", "progress_enabled", "futures_of")

__all__ = sorted(["finish_activity", "report_activity", *_LAZY])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'distml.diagnostics' has no attribute {name!r}")
    from distml.diagnostics import progress as progress_module
    return getattr(progress_module, name)
