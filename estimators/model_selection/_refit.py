"""The refit of the best candidate, started before the last scores arrive when a thread is idle.

A search ends with one fit of the best candidate on all the data, which cannot start before
every candidate-fold is scored; on a small search it is a twentieth of the time.  When nothing
is left to submit and no more tasks remain than the cluster has threads, the candidate
leading so far (the highest mean test score over the folds scored) is refitted on an idle
thread.  If it is still the best once all scores are in, that refit is the search's; otherwise
it is cancelled and the best candidate is refitted as usual.  Either way the fitted model is
the one scikit-learn's rules pick, fitted as it would be.
"""

from __future__ import annotations

import math
from typing import Any

from distml.estimators.model_selection._graph import configured, run_refit

__all__ = ["EarlyRefit", "leading_candidate"]


def leading_candidate(out: list[dict | None], n_splits: int, metric: str) -> int | None:
    """The index of the candidate with the highest mean ``metric`` test score over its folds
    scored so far (the first on ties, as scikit-learn's ranking), or None if none is scored.
    ``out`` holds one result per candidate-fold, candidate-major, None where not yet scored."""
    best, best_mean = None, -math.inf
    for c in range(len(out) // n_splits):
        scores = []
        for result in out[c * n_splits:(c + 1) * n_splits]:
            if result is None or result["fit_error"] is not None:
                continue
            score = result["test_scores"]
            score = score.get(metric) if isinstance(score, dict) else score
            if isinstance(score, (int, float)) and math.isfinite(score):
                scores.append(score)
        if scores and sum(scores) / len(scores) > best_mean:
            best, best_mean = c, sum(scores) / len(scores)
    return best


class EarlyRefit:
    """The refit of a search on the cluster: started early for the leading candidate
    (:meth:`start`, called when a thread is idle), handed over if that candidate turns out best
    (:meth:`take`), else run for the best one (:meth:`result`)."""

    def __init__(self, client: Any, estimator: Any, candidates: list[dict], n_splits: int,
                 metric: str, X: Any, y: Any, fit_params: dict) -> None:
        self.client, self.estimator, self.candidates = client, estimator, candidates
        self.n_splits, self.metric = n_splits, metric
        self.data = (X, y, fit_params)
        self.index: int | None = None
        self.future: Any = None

    def start(self, out: list[dict | None]) -> None:
        index = leading_candidate(out, self.n_splits, self.metric)
        if index is None:
            return
        self.index = index
        self.future = self._submit(index)

    def _submit(self, index: int) -> Any:
        model = configured(self.estimator, self.candidates[index])
        return self.client.submit(run_refit, model, *self.data, pure=False)

    def result(self, best_index: int) -> tuple[Any, float, list]:
        """``(fitted estimator, seconds, warnings)`` of candidate ``best_index`` fitted on all
        the data: the refit started early if it was of that candidate, else a new one."""
        return self.take(best_index) or self._submit(best_index).result()

    def take(self, best_index: int) -> tuple[Any, float, list] | None:
        """The started refit's ``(estimator, seconds, warnings)`` if it was of ``best_index``;
        otherwise None, and the started one is cancelled."""
        if self.future is None:
            return None
        future, self.future = self.future, None
        if best_index == self.index:
            return future.result()
        future.cancel()
        return None
