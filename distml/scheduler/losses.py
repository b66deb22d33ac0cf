"""What the scheduler does when workers are lost: reschedule what ran there, hand back the
small results it kept copies of, recompute the rest from lineage, and fail what can never run
because no worker is coming back.

A part of :class:`distml.scheduler.state.SchedulerState` (a mixin of its events and helpers
about lost workers and lost data); like the rest of the state machine it opens no socket and
reads no clock.
"""

from __future__ import annotations

from distml.scheduler.model import (MEMORY, PROCESSING, QUEUED, RELEASED, WAITING, Outbox,
                                    TaskState, WorkerState)


class WorkerLoss:
    """Events and helpers of :class:`SchedulerState` about lost workers and lost results."""

    def remove_worker(self, address: str, reason: str = "", stimulus_id: str = "") -> Outbox:
        """A worker is gone: reschedule what ran there and recompute what only it held."""
        self._stimulus = stimulus_id
        ws = self.workers.pop(address, None)
        if ws is None:
            return self._flush()
        for holders in self.unclaimed.values():
            holders.pop(address, None)
        lost = []
        for ts in ws.has_what:
            ts.who_has.discard(ws)
            if not ts.who_has and ts.state == MEMORY:
                lost.append(ts)
        ws.has_what.clear()
        self._lose_data(lost, f"its only holder {address} died ({reason or 'unknown cause'})")
        suspects = self._suspects(ws)
        for ts in list(ws.processing):
            self._stop_processing(ts)
            if ts not in suspects:  # only queued there: not a suspect
                self._transition(ts, RELEASED)
                self._ensure_computing(ts)
                continue
            ts.suspicious += 1
            if ts.suspicious > self.config.allowed_failures:
                self._set_erred(ts, None, None,
                                f"task {ts.key!r} was on {ts.suspicious} workers that died; the "
                                f"last, {address}, died of: {reason or 'unknown cause'}", ts.key,
                                "worker-died")
            else:
                self._transition(ts, RELEASED)
                self._ensure_computing(ts)
        for other in self.tasks.values():
            if other.stealing_to is ws:
                other.stealing_to = None
        return self._flush()

    def removal_is_final(self, address: str) -> bool:
        """Whether removing ``address`` now would fail something for good: a task at its last
        allowed failure, or scattered data held only there. Only then is the cause of its
        death (the nanny's report) worth waiting for, since the error will name it."""
        ws = self.workers.get(address)
        if ws is None:
            return False
        if any(ts.suspicious + 1 > self.config.allowed_failures for ts in self._suspects(ws)):
            return True
        return any(ts.payload is None and len(ts.who_has) == 1 for ts in ws.has_what)

    def _suspects(self, ws: WorkerState) -> set[TaskState]:
        """The tasks ``ws`` was running: those it said it started; if it died before saying
        (a task that ends its process at once does that), the first in its queue."""
        suspects = {ts for ts in ws.processing if ts.started}
        if not suspects and ws.processing:
            suspects = set(sorted(ws.processing, key=lambda t: t.priority)[:ws.nthreads])
        return suspects

    def no_workers(self, reason: str, stimulus_id: str = "") -> Outbox:
        """No worker is left and none is coming (their nannies gave up, or none joined in
        time): every task still to run fails with ``reason``, and so does any submitted
        before a worker joins again."""
        self._stimulus = stimulus_id
        if not self.workers:
            self.workerless = reason
        return self._flush()

    def _fail_pending(self) -> None:
        for ts in [t for t in self.tasks.values() if t.state in (WAITING, QUEUED)]:
            if ts.state in (WAITING, QUEUED):  # not failed already as a dependent
                self._set_erred(ts, None, None, f"no worker is left to run {ts.key!r} and none "
                                f"is coming back: {self.workerless}", ts.key, "no-workers")

    def _restore(self, ts: TaskState) -> bool:
        """Hand the scheduler's copy of ``ts``'s result to the least loaded worker, instead of
        recomputing it (and the inputs it was made from); False when there is no copy or no
        worker."""
        value = self.copies.get(ts.key)
        if value is None or not self.workers:
            return False
        ws = min(self.workers.values(), key=lambda w: (w.paused, w.load(), w.address))
        self._send(ws.address, {"op": "restore", "key": ts.key, "value": value,
                                "nbytes": ts.nbytes})
        self._arrived(ts, ws, ts.nbytes, value)
        return True

    def _lose_data(self, lost: list[TaskState], why: str) -> None:
        """The last copies of ``lost`` are gone: recompute what anything still needs.

        All of them are marked released first, so that no recomputation is placed on the belief
        that another lost result is still in memory. A result that every wanting client already
        holds (it came inline) and no task waits for stays released: it is recomputed only if
        something asks for it again.
        """
        for ts in lost:
            self._transition(ts, RELEASED)
            for cs in ts.who_wants - ts.delivered:
                self._send(cs.id, {"op": "key-recomputing", "key": ts.key, "reason": why})
        for ts in lost:
            for dep in ts.dependents:
                if dep.state == PROCESSING:
                    # it would fail to fetch this input: take it back until it is recomputed
                    self._send(dep.processing_on.address, {"op": "free", "keys": [dep.key]})
                    self._stop_processing(dep)
                    self._transition(dep, RELEASED)
                    self._ensure_computing(dep)
                elif dep.state in (WAITING, QUEUED) and ts.state != MEMORY:  # not restored
                    if dep.state == QUEUED:
                        self._transition(dep, WAITING)
                    dep.waiting_on.add(ts)
        for ts in lost:
            if ts.state != RELEASED:
                continue  # already restarted as an input of another lost task
            if not self._needed(ts):
                self._check_needed([ts])
            elif not ts.waiters and ts.who_wants <= ts.delivered:
                continue
            elif ts.payload is None:
                self._set_erred(ts, None, None, f"scattered data {ts.key!r} was lost: {why}",
                                ts.key, "lost")
            else:
                self._ensure_computing(ts)
