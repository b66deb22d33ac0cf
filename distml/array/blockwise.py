"""Block-by-block application of functions in index notation: ``blockwise``, ``map_blocks``."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distml.array.chunks import chunks_equal, common_chunks, known, tokenize
from distml.array.core import Array, merge_graphs

__all__ = ["blockwise", "map_blocks", "map_blocks_shapes", "unify_chunks"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _broadcastable(x: Array, axis: int) -> bool:
    """Whether an axis has length 1 (it broadcasts; its blocks are joined into one)."""
    return x.shape[axis] == 1


def unify_chunks(pairs: Sequence[tuple[Any, Any]]) -> tuple[dict[str, tuple], list]:
    """Common chunks for each index letter; Arrays are rechunked to them where needed.

    An axis of length 1 in one block broadcasts against any chunking.  Returns the chunks
    per letter and the (array, index) pairs with arrays rechunked.
    """
    from distml.array.rechunk import rechunk
    by_letter: dict[str, list] = {}
    for arg, ind in pairs:
        if ind is None or not isinstance(arg, Array):
            continue
        if len(ind) != arg.ndim:
            raise ValueError(f"index {ind!r} has {len(ind)} letters for an array with "
                             f"{arg.ndim} dimensions")
        for axis, letter in enumerate(ind):
            if not _broadcastable(arg, axis):
                by_letter.setdefault(letter, []).append(arg.chunks[axis])
            else:
                by_letter.setdefault(letter, [])
    letters: dict[str, tuple] = {}
    for letter, cands in by_letter.items():
        if not cands:
            letters[letter] = (1,)
        elif all(chunks_equal(c, cands[0]) for c in cands):
            letters[letter] = cands[0]
        else:
            if not known(tuple(cands)):
                raise ValueError("cannot align arrays with unknown chunk sizes "
                                 f"{cands}; call compute_chunk_sizes() first")
            sizes = {sum(c) for c in cands}
            if len(sizes) > 1:
                raise ValueError(f"shapes do not match: axis lengths {sorted(sizes)} for "
                                 f"index {letter!r}")
            letters[letter] = common_chunks(*cands)
    out = []
    for arg, ind in pairs:
        if ind is not None and isinstance(arg, Array):
            target = tuple((1,) if _broadcastable(arg, a) else letters[letter]
                           for a, letter in enumerate(ind))
            if not all(chunks_equal(t, c) for t, c in zip(target, arg.chunks)):
                arg = rechunk(arg, target)
        out.append((arg, ind))
    return letters, out


def _concat_nested(blocks: Any, axes: Sequence[int]) -> np.ndarray:
    """Concatenate a nested list of blocks; nesting level ``i`` joins along ``axes[i]``."""
    if not isinstance(blocks, list):
        return blocks
    parts = [_concat_nested(b, axes[1:]) for b in blocks]
    return np.concatenate(parts, axis=axes[0]) if len(parts) > 1 else parts[0]


def blockwise(func: Callable, out_ind: str, *args: Any, dtype: Any, name: str | None = None,
              new_axes: dict[str, int] | None = None, concatenate: bool = False,
              **kwargs: Any) -> Array:
    """Apply ``func`` block by block, matching blocks by index letters.

    ``args`` alternate ``array, index`` (index ``None`` for a plain argument passed as is).
    Letters absent from ``out_ind`` are contracted: ``func`` receives the list of blocks
    along them (or their concatenation with ``concatenate=True``).  ``new_axes`` gives the
    length of output letters no input has.  Keyword arguments go to ``func``.
    """
    if len(args) % 2:
        raise ValueError("blockwise arguments must come in (array, index) pairs")
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    for arg, ind in pairs:
        if ind is not None and not isinstance(arg, Array):
            raise TypeError(f"blockwise: an index {ind!r} was given for a non-array "
                            f"argument of type {type(arg).__name__}")
    letters, pairs = unify_chunks(pairs)
    for letter, n in (new_axes or {}).items():
        letters[letter] = (int(n),)
    unknown = [c for c in out_ind if c not in letters]
    if unknown:
        raise ValueError(f"output index letters {unknown} appear in no input; pass new_axes")
    out_chunks = tuple(letters[c] for c in out_ind)
    contracted = sorted({c for _, ind in pairs if ind for c in ind if c not in out_ind})
    numblocks = {c: len(letters[c]) for c in letters}
    fn = functools.partial(func, **kwargs) if kwargs else func
    if name is None:
        name = f"{getattr(func, '__name__', 'blockwise')}-" + tokenize(
            func, out_ind, [(a, i) for a, i in pairs], kwargs, new_axes, concatenate)
    dsk: dict = {}
    for out_idx in itertools.product(*(range(numblocks[c]) for c in out_ind)):
        where = dict(zip(out_ind, out_idx))
        call_args = []
        for arg, ind in pairs:
            if ind is None:
                call_args.append(arg)
                continue

            def key_at(pos: dict[str, int], arg: Array = arg, ind: str = ind) -> tuple:
                return (arg.name, *[0 if arg.numblocks[a] == 1 else pos[c]
                                    for a, c in enumerate(ind)])

            mine = [c for c in contracted if c in ind]
            if not mine:
                call_args.append(key_at(where))
                continue

            def nest(level: int, pos: dict[str, int], mine: list = mine, arg: Array = arg,
                     ind: str = ind) -> Any:
                if level == len(mine):
                    return key_at(pos, arg, ind)
                c = mine[level]
                n = arg.numblocks[ind.index(c)]
                return [nest(level + 1, {**pos, c: k}, mine, arg, ind) for k in range(n)]

            nested = nest(0, where)
            if concatenate:
                call_args.append((_concat_nested, nested, [ind.index(c) for c in mine]))
            else:
                call_args.append(nested)
        dsk[(name, *out_idx)] = (fn, *call_args)
    graphs = [a.dask for a, ind in pairs if ind is not None]
    return Array(merge_graphs(*graphs, dsk), name, out_chunks, dtype)


def _infer_dtype(func: Callable, args: Sequence[Any], kwargs: dict) -> np.dtype:
    probes = [np.ones((1,) * a.ndim, dtype=a.dtype) if isinstance(a, Array) else a for a in args]
    try:
        with np.errstate(all="ignore"):
            return np.asarray(func(*probes, **kwargs)).dtype
    except Exception as exc:
        raise ValueError(f"could not infer the output dtype of {func!r} on one-element "
                         f"blocks ({exc}); pass dtype=") from exc


def map_blocks(func: Callable, *args: Any, dtype: Any = None, chunks: Any = None,
               drop_axis: int | Sequence[int] = (), new_axis: int | Sequence[int] = (),
               name: str | None = None, **kwargs: Any) -> Array:
    """Apply ``func`` to corresponding blocks of the array arguments (broadcast, aligned).

    ``chunks`` gives the output block lengths (a tuple per axis, or one int per axis for
    equal blocks) when ``func`` changes them; ``drop_axis`` removes axes (blocks along them
    are concatenated first) and ``new_axis`` inserts axes of length 1 unless ``chunks`` says
    otherwise.  Other keyword arguments go to ``func``.
    """
    arrays = [a for a in args if isinstance(a, Array)]
    if not arrays:
        raise TypeError("map_blocks needs at least one distml Array argument")
    ndim = max(a.ndim for a in arrays)
    full = _LETTERS[:ndim]
    pairs: list = []
    for a in args:
        if isinstance(a, Array):
            pairs += [a, full[ndim - a.ndim:]]
        else:
            pairs += [a, None]
    drop = sorted({d % ndim for d in ([drop_axis] if isinstance(drop_axis, int) else drop_axis)})
    out_ind = "".join(c for i, c in enumerate(full) if i not in drop)
    new = [new_axis] if isinstance(new_axis, int) else list(new_axis)
    out_ndim = len(out_ind) + len(new)
    new = sorted(n % out_ndim for n in new)
    extra = iter(_LETTERS[ndim:])
    out_list = list(out_ind)
    new_axes = {}
    for pos in new:
        letter = next(extra)
        out_list.insert(pos, letter)
        new_axes[letter] = 1
    out_ind = "".join(out_list)
    if dtype is None:
        dtype = _infer_dtype(func, args, kwargs)
    if name is None:
        name = f"{getattr(func, '__name__', 'map_blocks')}-" + tokenize(
            func, list(args), kwargs, dtype, chunks, drop, new)
    out = blockwise(func, out_ind, *pairs, dtype=dtype, name=name, new_axes=new_axes,
                    concatenate=True, **kwargs)
    if chunks is not None:
        if len(chunks) != out.ndim:
            raise ValueError(f"chunks {chunks!r} have {len(chunks)} entries for a "
                             f"{out.ndim}-d result")
        fixed = []
        for axis, c in enumerate(chunks):
            if isinstance(c, (tuple, list)):
                if len(c) != out.numblocks[axis]:
                    raise ValueError(f"chunks {c} on axis {axis} give {len(c)} blocks, "
                                     f"the result has {out.numblocks[axis]}")
                fixed.append(tuple(c))
            else:
                fixed.append((c,) * out.numblocks[axis])
        out = Array(out.dask, out.name, tuple(fixed), out.dtype)
    return out


def map_blocks_shapes(x: Array) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Compute the shape of every block of ``x``: ``{block index: shape}``."""
    shapes = map_blocks(np.shape, x, dtype=np.int64, name=f"shape-{tokenize('shape', x)}")
    values = Array(shapes.dask, shapes.name, tuple((1,) * n for n in x.numblocks), np.int64)
    from distml import default_client
    client = default_client()
    keys = values.__distml_keys__()
    if client is not None:
        flat = client.get(values.__distml_graph__(), keys)
    else:
        from distml.local import get_threaded
        flat = get_threaded(values.__distml_graph__(), keys)
    out: dict = {}

    def walk(obj: Any, idx: tuple) -> None:
        if isinstance(obj, list):
            for i, sub in enumerate(obj):
                walk(sub, (*idx, i))
        else:
            out[idx] = tuple(obj)

    walk(flat, ())
    return out

