"""Running a search plan: on the cluster in bounded waves, or in this process without a client.

The plan's final nodes (one per candidate-fold) are submitted a wave at a time, each wave as one
graph that references the still-needed nodes of earlier waves by their futures.  At most two
waves are in flight, and the client drops its reference to a shared node once no unsubmitted
candidate-fold needs it (the scheduler keeps it while submitted tasks wait on it), so the
client's and the scheduler's memory stay bounded however many candidates there are.

When candidate-folds are many and small, the final nodes that read the same inputs (the
candidates sharing one fitted prefix on one fold) run as one task, ``batch_size`` at most:
the inputs are read once and each task's fixed cost (a scheduler round trip, moving a fold's
data to another worker) is paid once per batch.  A prefix step that only one batch's finals
use (the last step, when all the candidates after it fit in one batch) runs in that batch's
task too, just before them: it is still fitted once, but is not a task of its own, with its
messages and the move of its output to where the batch runs.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from enum import Enum
from typing import Any, Callable

from distml.estimators.model_selection._graph import Node, Ref, SearchPlan, _join

logger = logging.getLogger(__name__)

__all__ = ["batches", "default_batch_size", "run_plan"]


class _Graph:
    """A Dask-format graph as a collection, so ``Client.persist`` returns its futures."""

    def __init__(self, dsk: dict, keys: list[str]) -> None:
        self.dsk, self.keys = dsk, keys

    def __distml_graph__(self) -> dict:
        return self.dsk

    def __distml_keys__(self) -> list[str]:
        return self.keys

    def __distml_persist__(self, futures: list) -> list:
        return futures


def _task(node: Node) -> tuple:
    return (node.func, *[a.key if isinstance(a, Ref) else a for a in node.args])


def _run_local(plan: SearchPlan, finals: list[str], closures: dict, users: Counter,
               on_result: Callable[[str, Any], None]) -> None:
    values: dict[str, Any] = {}
    for final in finals:
        for key in closures[final]:
            if key not in values:
                node = plan.nodes[key]
                values[key] = node.func(*[values[a.key] if isinstance(a, Ref) else a
                                          for a in node.args])
        on_result(final, values[final])
        for key in closures[final]:
            users[key] -= 1
            if not users[key]:
                del values[key]


def collect(*results: Any) -> list:
    """The results of a batch's nodes (each runs inline, as a nested task, before this)."""
    return list(results)


class _Marker(Enum):
    STAGE = "the output of the prefix step computed in the same task"


def on_stage(stage: Any, *calls: list) -> list:
    """The results of a batch's nodes, each call ``[func, *args]`` with ``STAGE`` among its
    arguments standing for ``stage`` (the output of the step only they use, computed as a
    nested task just before this)."""
    return [call[0](*[stage if a is _Marker.STAGE else a for a in call[1:]]) for call in calls]


def fusions(plan: SearchPlan, units: dict[str, list[str]]) -> dict[str, str]:
    """``{task key: input}`` for the tasks whose finals are the only users of one of their
    inputs: that node runs inside the task (see the module docstring)."""
    users: dict[str, set[str]] = {}
    for members in units.values():
        for key in plan.closure(members):
            for dep in plan.nodes[key].deps:
                users.setdefault(dep, set()).add(key)
    out = {}
    for unit, members in units.items():
        for dep in plan.nodes[members[0]].deps:  # a task's finals share their inputs
            if users[dep] <= set(members):
                out[unit] = dep
                break
    return out


def batches(plan: SearchPlan, finals: list[str], size: int) -> dict[str, list[str]]:
    """``{task key: [final nodes it computes]}``, in submission order: finals with the same
    inputs grouped ``size`` at a time; a group of one is the final node itself."""
    groups: dict[tuple, list[list[str]]] = {}
    units: dict[str, list[str]] = {}
    for final in finals:
        same = groups.setdefault(tuple(plan.nodes[final].deps), [])
        if not same or len(same[-1]) >= size:
            same.append([final])
            units[final] = same[-1]
        else:
            same[-1].append(final)
    return {(members[0] if len(members) == 1 else
             "search-batch-" + _join(*members)): members for members in units.values()}


def default_batch_size(client: Any, n_finals: int, threads: int) -> int:
    """Finals per task: enough tasks left for four per worker thread, and at most 16."""
    if client is None:
        return 1
    return max(1, min(16, n_finals // (4 * max(1, threads))))


def run_plan(plan: SearchPlan, finals: list[str], on_result: Callable[[str, Any], None],
             client: Any = None, wave_size: int = 64, batch_size: int = 1,
             on_idle: Callable[[], None] | None = None, threads: int = 1) -> None:
    """Compute the nodes ``finals`` of ``plan`` (submitted in this order, ``batch_size`` that
    share their inputs per task), calling ``on_result(key, value)`` in this thread as each one
    finishes.  ``on_idle()`` is called once, when all is submitted and no more tasks than the
    cluster's ``threads`` are left (so a thread may be idle), unless that is only when all are
    done.  A task that raises raises here, and everything still running is released."""
    if client is None:
        closures = {f: plan.closure([f]) for f in finals}
        users: Counter = Counter(k for f in finals for k in closures[f])
        _run_local(plan, finals, closures, users, on_result)
        return
    from distml import as_completed

    units = batches(plan, finals, max(1, min(batch_size, wave_size)))
    fused = fusions(plan, units)
    inputs = {u: [k for k in plan.closure([d for m in members for d in plan.nodes[m].deps])
                  if k != fused.get(u)] for u, members in units.items()}
    users = Counter(k for keys in inputs.values() for k in keys)
    pending = deque(units)
    held: dict[str, Any] = {}
    done = as_completed()
    in_flight = 0

    def task(unit: str) -> tuple:
        members = units[unit]
        stage = fused.get(unit)
        if stage is not None:
            return (on_stage, _task(plan.nodes[stage]),
                    *[[node.func, *[(_Marker.STAGE if a.key == stage else a.key)
                                    if isinstance(a, Ref) else a for a in node.args]]
                      for node in (plan.nodes[m] for m in members)])
        if len(members) == 1:
            return _task(plan.nodes[unit])
        return (collect, *[_task(plan.nodes[m]) for m in members])

    def take_wave() -> tuple[list[str], int]:
        wave, count = [], 0
        while pending and count < wave_size:
            wave.append(pending.popleft())
            count += len(units[wave[-1]])
        return wave, count

    def submit(tasks: dict[str, tuple], deps: set[str]) -> None:
        """Persist ``tasks``; their inputs ``deps`` that are on the cluster already are
        referenced by future."""
        dsk = {d: held[d] for d in deps if d not in tasks}
        dsk.update(tasks)
        held.update(zip(tasks, client.persist(_Graph(dsk, list(tasks)))))

    def fill() -> int:
        """Submit waves until two are in flight: first every input node they need that is not
        on the cluster yet, as one earlier graph (so workers run these cheap, fanning-out
        prefix fits before any candidate's final fit), then each wave."""
        waves = []
        added = 0
        while pending and in_flight + added < 2 * wave_size:
            waves.append(take_wave())
            added += waves[-1][1]
        if not waves:
            return 0
        new = [k for wave, _ in waves for u in wave for k in inputs[u] if k not in held]
        new = list(dict.fromkeys(new))
        if new:
            submit({k: _task(plan.nodes[k]) for k in new},
                   {d for k in new for d in plan.nodes[k].deps})
        for wave, count in waves:
            submit({u: task(u) for u in wave}, {k for u in wave for k in inputs[u]})
            for unit in wave:
                done.add(held.pop(unit))
                for key in inputs[unit]:
                    users[key] -= 1
                    if not users[key]:
                        held.pop(key, None)
            logger.debug("search wave: %d candidate-folds in %d tasks", count, len(wave))
        return added

    finished = 0
    try:
        in_flight += fill()
        for future in done:
            value = future.result()
            members = units[future.key]
            in_flight -= len(members)
            finished += 1
            listed = len(members) > 1 or future.key in fused
            for key, result in zip(members, value if listed else [value]):
                on_result(key, result)
            in_flight += fill()
            if on_idle is not None and not pending and 0 < len(units) - finished <= threads:
                on_idle()
                on_idle = None
    finally:
        held.clear()
