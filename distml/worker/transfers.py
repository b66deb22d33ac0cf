"""How fast this worker receives data from its peers, measured on its own fetches.

The scheduler weighs moving a task's inputs against waiting for a busy worker; it needs
bytes per second, and the configured guess (``Config.transfer_bandwidth``) can be ten times off
(loopback versus a shared network).  Each fetch of ``MIN_BYTES`` or more, timed from request
to values in memory (so latency and unpickling count, as they do for the task waiting), moves
an exponential average; heartbeats carry it to the scheduler.
"""

from __future__ import annotations

__all__ = ["TransferMeter"]

#: Smaller fetches say more about latency than throughput and are not measured.
MIN_BYTES = 1_000_000
#: Weight of a new measurement in the average.
WEIGHT = 0.2


class TransferMeter:
    """An exponential average of the bytes per second of fetches of ``MIN_BYTES`` or more."""

    def __init__(self) -> None:
        self.bandwidth: float | None = None

    def record(self, nbytes: int, seconds: float) -> None:
        if nbytes < MIN_BYTES or seconds <= 0:
            return
        measured = nbytes / seconds
        self.bandwidth = measured if self.bandwidth is None else \
            (1 - WEIGHT) * self.bandwidth + WEIGHT * measured

    def report(self) -> dict[str, int]:
        """The heartbeat's field: ``{"bandwidth": bytes per second}``, once measured."""
        return {} if self.bandwidth is None else {"bandwidth": int(self.bandwidth)}
