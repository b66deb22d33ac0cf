"""Adaptive searches for estimators with ``partial_fit``: successive halving and Hyperband.

The training data is split once into a held-out test set and row blocks placed on the workers.
A model is trained by a chain of tasks, one ``partial_fit`` call on one block each; a task
depends on the previous model (small) and on a block (large), so it runs where the block is and
the model moves to the data.  Every model of a bracket trains side by side; at the end of each
rung the models are scored on the test set and only the best ``1/aggressiveness`` go on, for
``aggressiveness`` times more calls.  Hyperband runs several such brackets at once, from many
models with few calls each to a few models trained to ``max_iter`` calls.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import base64
import math
import numbers
import pickle
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterSampler
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

from distml.estimators._data import as_chunked, is_chunked
from distml.estimators.model_selection._checkpoint import Checkpoint
from distml.estimators.model_selection._graph import token
from distml.estimators.model_selection._task_env import on_worker as _on_worker
from distml.estimators.model_selection._split import train_test_split

__all__ = ["HyperbandSearchCV", "SuccessiveHalvingSearchCV"]


# ---------------------------------------------------------------------- tasks on the workers
@dataclass
class Trained:
    """A model and how it got there: ``partial_fit`` calls made and seconds spent in them."""
    model: Any
    calls: int = 0
    fit_time: float = 0.0


def _partial_fit(state: Trained | Any, X: Any, y: Any, fit_params: dict) -> Trained:
    if not isinstance(state, Trained):
        state = Trained(state)
    start = time.time()
    state.model.partial_fit(X, y, **fit_params)
    return Trained(state.model, state.calls + 1, state.fit_time + time.time() - start)


def run_partial_fit(state: Trained | Any, X: Any, y: Any, fit_params: dict) -> Trained:
    """One ``partial_fit`` call on one block (the model is copied, never changed in place, so a
    task that runs again after a worker died starts from the same model)."""
    if isinstance(state, Trained):
        import copy
        state = Trained(copy.deepcopy(state.model), state.calls, state.fit_time)
    else:
        state = clone(state)
    return _on_worker(_partial_fit, state, X, y, fit_params)


def _concat(blocks: tuple) -> Any:
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def run_score(state: Trained, scorer: Callable, n_test: int, with_model: bool,
              *test_blocks: Any) -> dict:
    """Score a model on the test set (its blocks joined on this worker); with ``with_model``
    the scored model comes back pickled too, for the checkpoint."""
    X = _concat(test_blocks[:n_test])
    y = _concat(test_blocks[n_test:])
    start = time.time()
    score = float(_on_worker(scorer, state.model, X, y))
    out = {"score": score, "score_time": time.time() - start, "calls": state.calls,
           "partial_fit_time": state.fit_time}
    if with_model:
        out["model"] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return out


# ---------------------------------------------------------------------- where tasks run
class _Local:
    """Runs tasks at once in this process (no client open); same interface as :class:`_Remote`."""

    def __init__(self) -> None:
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def place(self, values: list) -> list:
        return values

    def submit(self, func: Callable, *args: Any) -> Any:
        return func(*args)

    def watch(self, handle: Any, tag: Any) -> None:
        self.done.put((tag, handle))

    def next(self) -> tuple[Any, Any]:
        return self.done.get_nowait()

    def value(self, handle: Any) -> Any:
        return handle


class _Remote:
    """Runs tasks on the cluster; ``next`` returns scores in the order they finish."""

    def __init__(self, client: Any) -> None:
        from distml import as_completed
        self.client = client
        self.completed = as_completed()
        self.tags: dict[str, Any] = {}

    def place(self, values: list) -> list:
        return self.client.scatter(values)

    def submit(self, func: Callable, *args: Any) -> Any:
        return self.client.submit(func, *args, pure=False)

    def watch(self, handle: Any, tag: Any) -> None:
        self.tags[handle.key] = tag
        self.completed.add(handle)

    def next(self) -> tuple[Any, Any]:
        future = next(self.completed)
        return self.tags.pop(future.key), future.result()

    def value(self, handle: Any) -> Any:
        return handle if isinstance(handle, Trained) else handle.result()


# ---------------------------------------------------------------------- brackets
@dataclass
class _Bracket:
    """One successive-halving run: its models, the calls each must reach in this rung."""
    index: int
    alive: list[int]
    calls: int
    eta: int
    max_iter: int | None
    scores: dict[int, float] = field(default_factory=dict)

    def next_rung(self) -> bool:
        """Keep the best ``1/eta`` of this rung's models; False when the bracket is over."""
        if len(self.alive) <= 1 or (self.max_iter is not None and self.calls >= self.max_iter):
            return False
        ranked = sorted(self.alive, key=lambda m: (-self.scores[m], m))
        self.alive = ranked[:max(1, len(self.alive) // self.eta)]
        self.calls *= self.eta
        if self.max_iter is not None:
            self.calls = min(self.calls, self.max_iter)
        self.scores = {}
        return True


def _per_call(records: list[dict]) -> list[float]:
    """Seconds per ``partial_fit`` call in each rung of one model's history."""
    out, calls, spent = [], 0, 0.0
    for h in records:
        if h["partial_fit_calls"] > calls:
            out.append((h["partial_fit_time"] - spent) / (h["partial_fit_calls"] - calls))
        calls, spent = h["partial_fit_calls"], h["partial_fit_time"]
    return out or [0.0]


def _best_has(attr: str) -> Callable[[Any], bool]:
    """For ``available_if``: the best model (else the given estimator) has ``attr``."""
    return lambda self: hasattr(getattr(self, "best_estimator_", self.estimator), attr)


class _AdaptiveSearch(MetaEstimatorMixin, BaseEstimator, metaclass=ABCMeta):
    """What both adaptive searches share: data placement, training rungs, results."""

    def _set_common(self, estimator: Any, parameters: Any, max_iter: Any, aggressiveness: int,
                    test_size: Any, n_blocks: Any, random_state: Any, scoring: Any,
                    checkpoint: Any) -> None:
        self.estimator = estimator
        self.parameters = parameters
        self.max_iter = max_iter
        self.aggressiveness = aggressiveness
        self.test_size = test_size
        self.n_blocks = n_blocks
        self.random_state = random_state
        self.scoring = scoring
        self.checkpoint = checkpoint

    @abstractmethod
    def _brackets(self, n_params: int) -> list[tuple[int, int]]:
        """(n_models, first rung's calls) per bracket: each search defines its own."""

    def _max_iter(self) -> int | None:
        return self.max_iter

    def _check(self) -> None:
        if not hasattr(self.estimator, "partial_fit"):
            raise ValueError(f"{type(self).__name__} needs an estimator with partial_fit; "
                             f"{type(self.estimator).__name__} has none")
        if self.checkpoint is not None and not isinstance(self.random_state, numbers.Integral):
            raise ValueError("checkpoint needs an int random_state: with another, a rerun "
                             "samples other candidates and splits the data differently, so "
                             f"nothing recorded could be reused (got {self.random_state!r})")
        if not isinstance(self.aggressiveness, numbers.Integral) or self.aggressiveness < 2:
            raise ValueError(f"aggressiveness must be an integer >= 2, got "
                             f"{self.aggressiveness!r}")

    def _place(self, runner: Any, X: Any, y: Any, client: Any) -> tuple[list, list, list]:
        """Train blocks ``[(X, y) handles]`` on the workers and the test set's blocks."""
        test_size = 0.15 if self.test_size is None else self.test_size
        if is_chunked(X) or is_chunked(y):
            X_train, X_test, y_train, y_test = train_test_split(
                as_chunked(X), y, test_size=test_size, random_state=self._seed(1))
            arrays = [X_train, y_train, X_test, y_test]
            arrays = client.persist(arrays) if client is not None else \
                [a.persist() for a in arrays]
            keys = [[a.dask[(a.name, i, *([0] * (a.ndim - 1)))] for i in range(a.numblocks[0])]
                    for a in arrays]
            return list(zip(keys[0], keys[1])), keys[2], keys[3]
        X, y = np.asarray(X), np.asarray(y)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, random_state=self._seed(1))
        n_blocks = self.n_blocks or (4 if client is None
                                     else 2 * sum(client.nthreads().values()))
        bounds = np.linspace(0, len(X_train), n_blocks + 1).astype(int)
        pieces = [(X_train[a:b], y_train[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        placed = runner.place([p for pair in pieces for p in pair] + [X_test, y_test])
        train = [(placed[2 * i], placed[2 * i + 1]) for i in range(len(pieces))]
        return train, [placed[-2]], [placed[-1]]

    def _seed(self, offset: int) -> int:
        """A seed for one use (split, sampling of bracket ``offset - 10``): derived from an int
        ``random_state``, else drawn from it."""
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state) + offset
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> "_AdaptiveSearch":
        """Train and stop models rung by rung; ``fit_params`` go to every ``partial_fit``."""
        from distml import default_client
        self._check()
        client = default_client()
        runner = _Remote(client) if client is not None else _Local()
        scorer = check_scoring(self.estimator, self.scoring)
        blocks, X_test, y_test = self._place(runner, X, y, client)
        checkpoint = None if self.checkpoint is None else Checkpoint(self.checkpoint)
        search_id = self._search_id(X, y, fit_params, len(blocks)) if checkpoint else ""
        replay: deque = deque()
        brackets, params = [], []
        for b, (n, calls) in enumerate(self._brackets(len(blocks))):
            sampled = list(ParameterSampler(self.parameters, n, random_state=self._seed(10 + b)))
            brackets.append(_Bracket(b, list(range(len(params), len(params) + len(sampled))),
                                     calls, self.aggressiveness, self._max_iter()))
            params += sampled
        start = time.time()
        models = {m: clone(self.estimator).set_params(**clone(p, safe=False))
                  for m, p in enumerate(params)}
        state: dict[int, Any] = {}
        done_calls = {m: 0 for m in models}
        history: list[dict] = []
        best: tuple[float, int, Any] | None = None
        test = [*X_test, *y_test]

        def train(bracket: _Bracket) -> None:
            for m in bracket.alive:
                stored = checkpoint.get(token(search_id, m, params[m], bracket.calls)) \
                    if checkpoint else None
                if stored is not None:  # scored by an earlier run: its model goes on from there
                    trained = pickle.loads(base64.b64decode(stored.pop("model")))
                    state[m], done_calls[m] = trained, bracket.calls
                    replay.append(((bracket.index, m, trained), stored))
                    continue
                handle = state.get(m, models[m])
                for call in range(done_calls[m], bracket.calls):
                    Xb, yb = blocks[call % len(blocks)]
                    handle = runner.submit(run_partial_fit, handle, Xb, yb, fit_params)
                done_calls[m] = bracket.calls
                state[m] = handle
                runner.watch(runner.submit(run_score, handle, scorer, len(X_test),
                                           checkpoint is not None, *test),
                             (bracket.index, m, handle))

        try:
            for bracket in brackets:
                train(bracket)
            waiting = sum(len(b.alive) for b in brackets)
            while waiting:
                (b, m, handle), result = replay.popleft() if replay else runner.next()
                waiting -= 1
                if "model" in result:  # newly scored: recorded before anything else happens
                    result["elapsed_wall_time"] = time.time() - start
                    result["model"] = base64.b64encode(result["model"]).decode()
                    checkpoint.record(token(search_id, m, params[m], result["calls"]),
                                      {**result, "model_id": m})
                history.append(self._record(m, b, params[m], result, start))
                if best is None or result["score"] > best[0]:
                    best = (result["score"], m, handle)
                bracket = brackets[b]
                bracket.scores[m] = result["score"]
                if len(bracket.scores) == len(bracket.alive):
                    stopped = set(bracket.alive)
                    if bracket.next_rung():
                        train(bracket)
                        waiting += len(bracket.alive)
                    for m_stopped in stopped - set(bracket.alive):
                        state.pop(m_stopped, None)
        finally:
            if checkpoint is not None:
                checkpoint.close()
        self._results(params, history, brackets)
        self.best_index_ = best[1]
        self.best_score_ = best[0]
        self.best_params_ = params[best[1]]
        self.best_estimator_ = runner.value(best[2]).model
        self.scorer_ = scorer
        self.multimetric_ = False
        return self

    @staticmethod
    def _record(m: int, b: int, params: dict, result: dict, start: float) -> dict:
        """One line of ``history_`` for model ``m`` scored in bracket ``b``."""
        return {"model_id": m, "bracket": b, "params": params,
                "partial_fit_calls": result["calls"],
                "partial_fit_time": result["partial_fit_time"],
                "score": result["score"], "score_time": result["score_time"],
                "elapsed_wall_time": result.get("elapsed_wall_time", time.time() - start)}

    def _search_id(self, X: Any, y: Any, fit_params: dict, n_blocks: int) -> str:
        """What makes two runs the same search for the checkpoint: the search's arguments
        (``checkpoint`` aside), the data, fit parameters and the number of training blocks."""
        from distml.estimators.model_selection._search import data_token
        own = {k: v for k, v in self.get_params(deep=False).items() if k != "checkpoint"}
        data = (("chunked", getattr(X, "name", None), getattr(X, "shape", None),
                 getattr(y, "name", None)) if is_chunked(X) or is_chunked(y)
                else data_token(np.asarray(X), np.asarray(y)))
        return token(type(self).__name__, own, data, fit_params, n_blocks)

    def _results(self, params: list[dict], history: list[dict], brackets: list) -> None:
        self.history_ = history
        self.model_history_ = {m: [h for h in history if h["model_id"] == m]
                               for m in range(len(params))}
        last = [self.model_history_[m][-1] for m in range(len(params))]
        scores = np.array([h["score"] for h in last])
        fit_times = [_per_call(hs) for hs in self.model_history_.values()]
        score_times = [[h["score_time"] for h in hs] for hs in self.model_history_.values()]
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(len(scores), dtype=np.int32)
        rank[order] = np.arange(1, len(scores) + 1)
        results: dict[str, Any] = {
            "model_id": np.arange(len(params)),
            "bracket": np.array([h["bracket"] for h in last]),
            "params": params,
            "partial_fit_calls": np.array([h["partial_fit_calls"] for h in last]),
            "mean_partial_fit_time": np.array([np.mean(t) for t in fit_times]),
            "std_partial_fit_time": np.array([np.std(t) for t in fit_times]),
            "mean_score_time": np.array([np.mean(t) for t in score_times]),
            "std_score_time": np.array([np.std(t) for t in score_times]),
            "test_score": scores,
            "rank_test_score": rank,
        }
        for name in sorted({k for p in params for k in p}):
            values = np.ma.MaskedArray(np.empty(len(params), dtype=object),
                                       mask=[name not in p for p in params])
            for i, p in enumerate(params):
                if name in p:
                    values[i] = p[name]
            results[f"param_{name}"] = values
        self.cv_results_ = results
        self.metadata_ = {"n_models": len(params), "brackets": len(brackets),
                          "partial_fit_calls": int(sum(h["partial_fit_calls"] for h in last))}

    def predict(self, X: Any) -> Any:
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        return self.best_estimator_.decision_function(X)

    def score(self, X: Any, y: Any) -> float:
        return float(self.scorer_(self.best_estimator_, X, y))


class SuccessiveHalvingSearchCV(_AdaptiveSearch):
    """Successive halving over ``n_initial_parameters`` sampled candidates.

    Every candidate gets ``n_initial_iter`` ``partial_fit`` calls (one block each), then the
    best ``1/aggressiveness`` get ``aggressiveness`` times as many, until one is left or
    ``max_iter`` calls are reached.  Results in ``cv_results_`` (one row per model, scored on a
    held-out ``test_size`` share of the data), ``history_``, ``model_history_``, ``best_*``.
    ``checkpoint="path"`` records every scored model (with the model itself) so that a rerun
    with the same arguments, an int ``random_state`` and the same data goes on from there.
    """

    def __init__(self, estimator: Any, parameters: dict | list, *,
                 n_initial_parameters: int = 10, n_initial_iter: int = 1,
                 max_iter: int | None = None, aggressiveness: int = 3,
                 test_size: float | None = None, n_blocks: int | None = None,
                 random_state: Any = None, scoring: Any = None,
                 checkpoint: Any = None) -> None:
        self._set_common(estimator, parameters, max_iter, aggressiveness, test_size, n_blocks,
                         random_state, scoring, checkpoint)
        self.n_initial_parameters = n_initial_parameters
        self.n_initial_iter = n_initial_iter

    def _brackets(self, n_blocks: int) -> list[tuple[int, int]]:
        for name in ("n_initial_parameters", "n_initial_iter"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return [(self.n_initial_parameters, self.n_initial_iter)]


class HyperbandSearchCV(_AdaptiveSearch):
    """Hyperband: brackets of successive halving run side by side, trading many models with
    few ``partial_fit`` calls against few models trained to ``max_iter`` calls.

    With ``eta = aggressiveness`` and ``s_max = floor(log_eta(max_iter))``, bracket ``s`` starts
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` models at ``max_iter / eta**s`` calls each.
    """

    def __init__(self, estimator: Any, parameters: dict | list, *, max_iter: int = 81,
                 aggressiveness: int = 3, test_size: float | None = None,
                 n_blocks: int | None = None, random_state: Any = None,
                 scoring: Any = None, checkpoint: Any = None) -> None:
        self._set_common(estimator, parameters, max_iter, aggressiveness, test_size, n_blocks,
                         random_state, scoring, checkpoint)

    def _brackets(self, n_blocks: int) -> list[tuple[int, int]]:
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        eta = self.aggressiveness
        s_max = 0
        while eta ** (s_max + 1) <= self.max_iter:
            s_max += 1
        return [(math.ceil((s_max + 1) / (s + 1) * eta ** s), max(1, self.max_iter // eta ** s))
                for s in range(s_max, -1, -1)]

    def budget(self) -> int:
        """The most ``partial_fit`` calls this search can make (every bracket run through)."""
        total = 0
        for n, calls in self._brackets(1):
            before = 0
            while True:
                total += n * (calls - before)
                if n <= 1 or calls >= self.max_iter:
                    break
                before = calls
                n, calls = max(1, n // self.aggressiveness), min(calls * self.aggressiveness,
                                                                 self.max_iter)
        return total
