"""What a running search shows: a progress bar over candidate-folds, and its status on the
dashboard (through :mod:`distml.diagnostics`; both do nothing where that module is absent)."""

from __future__ import annotations

import time
from typing import Any

#: Seconds between two reports to the dashboard (which draws every half second).
REPORT_INTERVAL = 0.25


class SearchProgress:
    """Counts scored candidate-folds of one search; ``enabled=None`` shows the bar only in
    interactive use (the diagnostics module decides).  The dashboard hears of it at most every
    ``REPORT_INTERVAL`` seconds, and when it ends: a message per result would cost the cluster
    more than the page shows."""

    def __init__(self, name: str, total: int, enabled: bool | None, **fields: Any) -> None:
        self.name, self.total, self.done = name, total, 0
        self.fields = fields
        self._sent = 0.0
        try:
            from distml.diagnostics import finish_activity, report_activity
            from distml.diagnostics.progress import ProgressBar
        except ImportError:
            self._bar = self._report = self._finish = None
        else:
            self._bar = ProgressBar(total, name, unit="fit",
                                    disable=None if enabled is None else not enabled)
            self._report, self._finish = report_activity, finish_activity
        self._send()

    def _send(self) -> None:
        if self._report is not None:
            self._sent = time.monotonic()
            self._report(self.name, done=self.done, total=self.total, **self.fields)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self.done == self.total or time.monotonic() - self._sent >= REPORT_INTERVAL:
            self._send()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._finish is not None:
            self._finish(self.name)
