"""Running a search plan: on the cluster in bounded waves, or in this process without a client.

The plan's final nodes (one per candidate-fold) are submitted a wave at a time, each wave as one
graph that references the still-needed nodes of earlier waves by their futures.  At most two
waves are in flight, and the client drops its reference to a shared node once no unsubmitted
candidate-fold needs it (the scheduler keeps it while submitted tasks wait on it), so the
client's and the scheduler's memory stay bounded however many candidates there are.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Callable

from distml.estimators.model_selection._graph import Node, Ref, SearchPlan

logger = logging.getLogger(__name__)

__all__ = ["run_plan"]


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


def run_plan(plan: SearchPlan, finals: list[str], on_result: Callable[[str, Any], None],
             client: Any = None, wave_size: int = 64) -> None:
    """Compute the nodes ``finals`` of ``plan`` (submitted in this order), calling
    ``on_result(key, value)`` in this thread as each one finishes.  A task that raises raises
    here, and everything still running is released."""
    closures = {f: plan.closure([f]) for f in finals}
    users: Counter = Counter(k for f in finals for k in closures[f])
    if client is None:
        _run_local(plan, finals, closures, users, on_result)
        return
    from distml import as_completed

    pending = deque(finals)
    held: dict[str, Any] = {}
    done = as_completed()
    in_flight = 0

    def submit_wave() -> int:
        wave = [pending.popleft() for _ in range(min(wave_size, len(pending)))]
        needed = plan.closure(wave)
        new = [k for k in needed if k not in held]
        dsk = {k: held[k] if k in held else _task(plan.nodes[k]) for k in needed}
        held.update(zip(new, client.persist(_Graph(dsk, new))))
        for final in wave:
            done.add(held[final])
            for key in closures[final]:
                users[key] -= 1
                if not users[key] and key != final:
                    held.pop(key, None)
        logger.debug("search wave: %d candidate-folds, %d new tasks", len(wave), len(new))
        return len(wave)

    try:
        while pending and in_flight < 2 * wave_size:
            in_flight += submit_wave()
        for future in done:
            value = future.result()
            held.pop(future.key, None)
            in_flight -= 1
            on_result(future.key, value)
            while pending and in_flight < 2 * wave_size:
                in_flight += submit_wave()
    finally:
        held.clear()
