"""The scheduler's copies of small results, so that a lost worker's small results come back
without recomputation.

Small results (at most ``inline_result_bytes`` pickled) already travel to the scheduler inside
the completion message, as opaque bytes. Keeping those of tasks that others depend on costs no
extra transfer, and when the worker holding one dies the scheduler hands the bytes to a live
worker instead of recomputing the task and, often, the whole subtree of already consumed inputs
under it (a tree reduction loses its partial sums this way). The copies are never unpickled
here; the oldest go first past a byte budget (``Config.result_copies_bytes``).
"""

from __future__ import annotations


class ResultCopies:
    """Opaque bytes of small results by key, at most ``budget`` bytes in all (oldest dropped
    first)."""

    def __init__(self, budget: int):
        if budget < 0:
            raise ValueError(f"result_copies_bytes must be >= 0, got {budget!r}")
        self.budget = budget
        self.nbytes = 0
        self._copies: dict[str, bytes] = {}

    def keep(self, key: str, value: bytes) -> None:
        """Keep ``value`` as ``key``'s copy (replacing an older one)."""
        self.drop(key)
        if len(value) > self.budget:
            return
        self._copies[key] = value
        self.nbytes += len(value)
        while self.nbytes > self.budget:
            oldest = next(iter(self._copies))
            self.nbytes -= len(self._copies.pop(oldest))

    def get(self, key: str) -> bytes | None:
        return self._copies.get(key)

    def drop(self, key: str) -> None:
        value = self._copies.pop(key, None)
        if value is not None:
            self.nbytes -= len(value)

    def __contains__(self, key: str) -> bool:
        return key in self._copies

    def __len__(self) -> int:
        return len(self._copies)
