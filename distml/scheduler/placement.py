"""Where a ready task runs, and whether a queued one may be stolen: data locality against load.

Pure functions of the scheduler's records (no clock, no I/O). Moving a task's inputs costs
``bytes / bandwidth`` seconds for certain, plus memory on both sides; the wait it avoids is an
estimate built from measured durations of each task kind (or a default guess for kinds that
never finished). So a task stays with its inputs unless leaving clearly pays, and stealing
only moves tasks whose measured run time dwarfs the transfer (the idea behind Dask's
``worker_objective`` and its stealing cost multiplier, tuned more conservatively here).
"""

from __future__ import annotations

from typing import Collection

from distml.scheduler.model import TaskState, WorkerState

#: A task leaves the workers holding its inputs only if waiting there would take longer than
#: this many times the estimated transfer.
TRANSFER_MARGIN = 2.0
#: Stealing leaves a task where it is when moving its inputs would take more than this
#: fraction of its measured run time (transfer time versus compute time).
STEAL_MAX_TRANSFER_FRACTION = 0.25
#: Beyond this many workers only holders of a task's inputs are considered (placement stays
#: cheap on big clusters; stealing spreads the work).
HOLDERS_ONLY_ABOVE = 32


def transfer_time(ts: TaskState, ws: WorkerState, bandwidth: float) -> float:
    """Seconds to bring the inputs of ``ts`` that ``ws`` lacks to ``ws``."""
    return sum(d.nbytes for d in ts.dependencies if ws not in d.who_has) / bandwidth


def expected_wait(ws: WorkerState, guessed: float, unknown_duration: float) -> float:
    """Seconds before a task sent to ``ws`` now would start: none while a thread is free, else
    its estimated work per thread. ``guessed`` is the part of that work estimated by the
    default guess; at most one guess of it counts, since a backlog of guesses is not evidence
    enough to move data for (stealing corrects once real durations are known)."""
    if ws.busy_threads() < ws.nthreads:
        return 0.0
    guessed = min(guessed, ws.occupancy)
    return (ws.occupancy - guessed + min(guessed, unknown_duration)) / ws.nthreads


def decide_worker(ts: TaskState, workers: Collection[WorkerState], guessed: dict,
                  unknown_duration: float, bandwidth: float) -> WorkerState | None:
    """The worker for ``ts`` (which has inputs) among the unpaused ``workers``: the holder of
    its inputs that starts it soonest counting the fetch of what it lacks, unless a worker
    holding none starts it sooner even with its transfer counted ``TRANSFER_MARGIN`` times.
    Ties go to a holder, then to the less loaded worker, then the lower address. ``guessed``
    maps workers to the part of their occupancy that is the default guess (see
    :func:`expected_wait`)."""
    deps = ts.dependencies
    holders: set[WorkerState] = set()
    for d in deps:
        holders.update(d.who_has)
    local, local_cost = None, None
    for ws in holders:
        if ws.paused:
            continue
        wait = expected_wait(ws, guessed.get(ws, 0.0), unknown_duration)
        fetch = transfer_time(ts, ws, bandwidth) if len(deps) > 1 else 0.0
        cost = (wait + fetch, ws.load(), ws.address)
        if local_cost is None or cost < local_cost:
            local, local_cost = ws, cost
    if local is not None and local_cost[0] == 0.0:
        return local  # a free thread next to all the data: nothing can start it sooner
    if local is not None and len(workers) > HOLDERS_ONLY_ABOVE:
        return local  # too many workers to scan: stealing spreads the work
    if local is not None and \
            local_cost[0] <= TRANSFER_MARGIN * sum(d.nbytes for d in deps) / bandwidth:
        return local  # moving everything elsewhere takes longer than waiting here
    away, away_cost = None, None
    for ws in workers:
        if ws.paused or ws in holders:
            continue
        wait = expected_wait(ws, guessed.get(ws, 0.0), unknown_duration)
        cost = (wait + TRANSFER_MARGIN * transfer_time(ts, ws, bandwidth), ws.load(), ws.address)
        if away_cost is None or cost < away_cost:
            away, away_cost = ws, cost
    if local is None or away is None:
        return local or away
    return away if away_cost[0] < local_cost[0] else local


def worth_stealing(measured: bool, estimate: float, transfer: float) -> bool:
    """Whether a queued task with run time ``estimate`` (``measured`` or guessed) may move to a
    worker that needs ``transfer`` seconds to fetch its inputs."""
    if transfer == 0:
        return True
    return measured and transfer <= STEAL_MAX_TRANSFER_FRACTION * estimate


def plan_steals(workers: Collection[WorkerState], durations: dict[str, float],
                bandwidth: float) -> list[tuple[TaskState, WorkerState]]:
    """Tasks queued on overloaded workers to move to idle ones, as ``(task, thief)``: the
    lowest-priority surplus of each victim, each to the idle worker with the least planned
    work, when :func:`worth_stealing` and when it would start there before it would where it
    is."""
    incoming: dict[WorkerState, list[float]] = {}  # steals asked for, not yet answered
    leaving: dict[WorkerState, int] = {}
    for ws in workers:
        for ts, estimate in ws.processing.items():
            if ts.stealing_to is not None:
                incoming.setdefault(ts.stealing_to, []).append(estimate)
                leaving[ws] = leaving.get(ws, 0) + 1
    victims = sorted((ws for ws in workers
                      if ws.busy_threads() - leaving.get(ws, 0) > ws.nthreads),
                     key=WorkerState.load, reverse=True)
    idle = [ws for ws in workers if not ws.paused
            and ws.busy_threads() + len(incoming.get(ws, ())) < ws.nthreads]
    if not idle or not victims:
        return []
    planned = {ws: ws.occupancy + sum(incoming.get(ws, ())) for ws in idle}
    steals = []
    for victim in victims:
        movable = sorted((ts for ts in victim.processing  # (a started one is not given up)
                          if ts.stealing_to is None and not ts.started
                          and ts not in victim.long_running),
                         key=lambda t: t.priority, reverse=True)
        surplus = victim.busy_threads() - leaving.get(victim, 0) - victim.nthreads
        remaining = victim.load()  # after the steals planned so far
        for ts in movable[:surplus]:
            thief = min(planned, key=lambda w: (planned[w] / w.nthreads, w.address))
            estimate = victim.processing[ts]
            transfer = transfer_time(ts, thief, bandwidth)
            if not worth_stealing(ts.prefix in durations, estimate, transfer) or (
                    planned[thief] / thief.nthreads + transfer
                    >= remaining - estimate / victim.nthreads):
                continue
            planned[thief] += estimate
            remaining -= estimate / victim.nthreads
            steals.append((ts, thief))
    return steals
