"""What a running search shows: a progress bar over candidate-folds, and its status on the
dashboard (through :mod:`distml.diagnostics`; both do nothing where that module is absent)."""

from __future__ import annotations

from typing import Any


class SearchProgress:
    """Counts scored candidate-folds of one search; ``enabled=None`` shows the bar only in
    interactive use (the diagnostics module decides)."""

    def __init__(self, name: str, total: int, enabled: bool | None, **fields: Any) -> None:
        self.name, self.total, self.done = name, total, 0
        self.fields = fields
        self._every = max(1, total // 50)
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
            self._report(self.name, done=self.done, total=self.total, **self.fields)

    def update(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self._bar is not None:
            self._bar.update(n)
        if self.done // self._every != before // self._every or self.done == self.total:
            self._send()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._finish is not None:
            self._finish(self.name)
