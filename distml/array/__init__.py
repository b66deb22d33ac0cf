"""Chunked n-dimensional arrays computed as task graphs: ``import distml.array as da``.

An :class:`Array` is a grid of numpy blocks, each produced by a task.  Operations build
graphs lazily; ``compute()`` runs them on the default :class:`distml.Client` when one is
open, else on a local thread pool.
"""

from __future__ import annotations

from distml.array import random
from distml.array.blockwise import blockwise, map_blocks
from distml.array.chunks import normalize_chunks
from distml.array.core import Array
from distml.array.creation import (arange, from_array, from_blocks, full, full_like, linspace,
                                   ones, ones_like, zeros, zeros_like)
from distml.array.dispatch import expand_dims, round, squeeze
from distml.array.elementwise import abs, clip, elemwise, where
from distml.array.io import from_npy, to_npy
from distml.array.linalg import dot, matmul, tensordot, transpose
from distml.array.manipulation import concatenate, stack
from distml.array.nanreductions import (nanmax, nanmean, nanmin, nanprod, nanstd, nansum,
                                        nanvar)
from distml.array.optimize import optimize
from distml.array.rechunk import rechunk
from distml.array.reductions import (all, any, argmax, argmin, max, mean, min, nanargmax,
                                     nanargmin, prod, std, sum, var)

__all__ = [
    "Array", "abs", "all", "any", "arange", "argmax", "argmin", "blockwise", "clip",
    "compute", "concatenate", "dot", "elemwise", "expand_dims", "from_array", "from_blocks",
    "from_npy", "full", "full_like", "linspace", "map_blocks", "matmul", "max", "mean", "min",
    "nanargmax", "nanargmin", "nanmax", "nanmean", "nanmin", "nanprod", "nanstd", "nansum",
    "nanvar", "normalize_chunks", "ones", "ones_like", "optimize", "prod", "random", "rechunk",
    "round", "squeeze", "stack", "std", "sum", "tensordot", "to_npy", "transpose", "var",
    "where", "zeros", "zeros_like",
]


def compute(*arrays: Array) -> tuple:
    """Compute several arrays together (one graph, shared work computed once)."""
    from distml import default_client
    client = default_client()
    if client is not None:
        return tuple(client.compute(list(arrays), sync=True))
    from distml.array.core import assemble, merge_graphs
    from distml.local import get_threaded
    dsk = merge_graphs(*[a.dask for a in arrays])
    keys = [a.__distml_keys__() for a in arrays]
    results = get_threaded(optimize(dsk, keys), keys)
    return tuple(assemble(r) for r in results)

