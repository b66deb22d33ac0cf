"""Task placement on a real cluster: work over large blocks runs where the blocks are."""

from __future__ import annotations

import numpy as np

from distml.client.future import wait


def alias(block):
    """Return the input block itself, like the keys of ``from_blocks`` or a fold's view."""
    return block


def test_aliases_of_large_blocks_run_on_the_worker_holding_them(client):
    holder, other = sorted(client.nthreads())
    rng = np.random.default_rng(0)
    blocks = client.scatter([rng.random(5 * 10**6) for _ in range(2)], workers=[holder])
    # Sixteen at once, of a kind never run before: each is first estimated at the default
    # guess, which must not be taken as a reason to copy 40 MB to the idle worker.
    views = [client.submit(alias, b, key=f"alias_view-{i}-{j}")
             for i, b in enumerate(blocks) for j in range(8)]
    wait(views, timeout=60)
    assert all(f.status == "finished" for f in views)
    # A view computed on the other worker would be held there, and its block copied there.
    placed = client.who_has(blocks + views)
    assert placed == {f.key: [holder] for f in blocks + views}, (other, placed)
