"""Splitting chunked arrays without moving data through the client: random train/test splits of
every row block, and k-fold splits that follow block boundaries (for searches over chunked data)."""

from __future__ import annotations

import itertools
import math
import numbers
import secrets
from typing import Any

import numpy as np
import sklearn.model_selection

from distml.array import Array, from_array
from distml.array.chunks import tokenize
from distml.array.core import merge_graphs
from distml.estimators._data import is_chunked

__all__ = ["block_folds", "select_blocks", "train_test_split"]


def _split_sizes(n: int, test_size: Any, train_size: Any) -> tuple[int, int]:
    """Train and test set sizes, following scikit-learn's rules for floats and ints."""
    if test_size is None and train_size is None:
        test_size = 0.25
    for name, value in (("test_size", test_size), ("train_size", train_size)):
        if value is None:
            continue
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if not 0 < value < n:
                raise ValueError(f"{name}={value} should be either positive and smaller than "
                                 f"the number of samples {n} or a float in the (0, 1) range")
        elif isinstance(value, numbers.Real):
            if not 0 < value < 1:
                raise ValueError(f"{name}={value} should be either positive and smaller than "
                                 f"the number of samples {n} or a float in the (0, 1) range")
        else:
            raise ValueError(f"Invalid value for {name}: {value!r}")
    n_test = None if test_size is None else (
        math.ceil(test_size * n) if isinstance(test_size, numbers.Real)
        and not isinstance(test_size, numbers.Integral) else int(test_size))
    n_train = None if train_size is None else (
        math.floor(train_size * n) if isinstance(train_size, numbers.Real)
        and not isinstance(train_size, numbers.Integral) else int(train_size))
    n_test = n - n_train if n_test is None else n_test
    n_train = n - n_test if n_train is None else n_train
    if n_train + n_test > n:
        raise ValueError(f"The sum of train_size and test_size = {n_train + n_test}, should be "
                         f"smaller than the number of samples {n}. Reduce test_size and/or "
                         "train_size.")
    if n_train == 0 or n_test == 0:
        raise ValueError(f"With n_samples={n}, test_size={test_size} and train_size="
                         f"{train_size}, the resulting {'train' if n_train == 0 else 'test'} "
                         "set will be empty. Adjust any of the aforementioned parameters.")
    return n_train, n_test


def _allocate(total: int, capacity: list[int]) -> list[int]:
    """Split ``total`` over blocks in proportion to ``capacity`` (largest remainders first)."""
    room = sum(capacity)
    quotas = [total * c / room if room else 0.0 for c in capacity]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(capacity)), key=lambda i: (counts[i] - quotas[i], i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def _seed(random_state: Any) -> int:
    if random_state is None:
        return secrets.randbits(63)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"random_state must be None, a non-negative int or a RandomState, got "
                     f"{random_state!r}")


def _rows(block: np.ndarray, seed: int, index: int, n_train: int, n_test: int,
          shuffle: bool, part: str) -> np.ndarray:
    """The train or test rows of block ``index``: its own seeded permutation, split in two."""
    if shuffle:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        order = rng.permutation(len(block))
        rows = order[:n_test] if part == "test" else order[n_test:n_test + n_train]
    else:
        rows = np.arange(n_train) if part == "train" else np.arange(n_train, n_train + n_test)
    return block[rows]


def _take(arr: Array, seed: int, train: list[int], test: list[int], shuffle: bool,
          part: str) -> Array:
    counts = train if part == "train" else test
    name = f"{part}-split-{tokenize(arr, seed, train, test, shuffle)}"
    dsk: dict = {}
    for rest in itertools.product(*(range(n) for n in arr.numblocks[1:])):
        for i in range(arr.numblocks[0]):
            dsk[(name, i, *rest)] = (_rows, (arr.name, i, *rest), seed, i, train[i], test[i],
                                     shuffle, part)
    return Array(merge_graphs(arr.dask, dsk), name, (tuple(counts), *arr.chunks[1:]),
                 arr.dtype)


def train_test_split(*arrays: Any, test_size: float | int | None = None,
                     train_size: float | int | None = None, random_state: Any = None,
                     shuffle: bool = True) -> list:
    """Split arrays into random train and test subsets: ``[a_train, a_test, b_train, ...]``.

    Numpy inputs go to scikit-learn's ``train_test_split``.  For chunked arrays every row
    block is split on its own (rows permuted with a seed derived from ``random_state`` and
    the block index), so results are reproducible, computed on the workers, and the blocks
    of the outputs keep the inputs' alignment.  Test size defaults to 25%.  Tables must be
    turned into arrays first (``.to_array()``).
    """
    if not arrays:
        raise ValueError("At least one array required as input")
    if not any(is_chunked(a) for a in arrays):
        return sklearn.model_selection.train_test_split(
            *arrays, test_size=test_size, train_size=train_size, random_state=random_state,
            shuffle=shuffle)
    if not all(isinstance(a, Array) or not is_chunked(a) for a in arrays):
        raise TypeError("train_test_split takes numpy arrays or distml Arrays; convert tables "
                        "with .to_array() first")
    first = next(a for a in arrays if isinstance(a, Array))
    rows = tuple(int(c) for c in first.chunks[0])
    lengths = [int(a.shape[0]) if isinstance(a, Array) else len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError("Found input variables with inconsistent numbers of samples: "
                         f"{lengths}")
    n_train, n_test = _split_sizes(sum(rows), test_size, train_size)
    test = _allocate(n_test, list(rows))
    train = _allocate(n_train, [r - t for r, t in zip(rows, test)])
    seed = _seed(random_state)
    out = []
    for a in arrays:
        arr = a if isinstance(a, Array) else from_array(np.asarray(a),
                                                        chunks=(rows, *np.shape(a)[1:]))
        arr = arr.rechunk((rows, *arr.chunks[1:]))
        out += [_take(arr, seed, train, test, shuffle, "train"),
                _take(arr, seed, train, test, shuffle, "test")]
    return out


def _same_block(block: Any) -> Any:
    return block


def block_folds(nblocks: int, n_splits: int, shuffle: bool = False,
                random_state: Any = None) -> list[tuple[list[int], list[int]]]:
    """K-fold splits of ``nblocks`` row blocks: ``[(train_blocks, test_blocks), ...]``.

    Blocks are dealt to folds in contiguous runs as ``KFold`` deals rows (the first
    ``nblocks % n_splits`` folds get one block more), after a seeded permutation when
    ``shuffle``; every block is in exactly one test fold, so no block is ever cut.
    """
    if not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError(f"k-fold cross-validation requires at least one train/test split by "
                         f"setting n_splits=2 or more, got n_splits={n_splits}.")
    if n_splits > nblocks:
        raise ValueError(f"Cannot have number of splits n_splits={n_splits} greater than the "
                         f"number of row blocks: {nblocks} (folds follow block boundaries; "
                         "rechunk the rows into more blocks)")
    order = np.arange(nblocks)
    if shuffle:
        np.random.default_rng(_seed(random_state)).shuffle(order)
    sizes = np.full(n_splits, nblocks // n_splits)
    sizes[:nblocks % n_splits] += 1
    folds, start = [], 0
    for size in sizes:
        test = sorted(int(b) for b in order[start:start + size])
        train = [b for b in range(nblocks) if b not in set(test)]
        folds.append((train, test))
        start += size
    return folds


def select_blocks(arr: Array, blocks: list[int]) -> Array:
    """The row blocks ``blocks`` of ``arr`` (in that order) as a new Array; each output block
    is the input block itself, so nothing is copied or moved until it is used."""
    if not blocks:
        raise ValueError("select_blocks: no blocks selected")
    name = f"blocks-{tokenize(arr.name, tuple(blocks))}"
    dsk: dict = {}
    for rest in itertools.product(*(range(n) for n in arr.numblocks[1:])):
        for j, i in enumerate(blocks):
            dsk[(name, j, *rest)] = (_same_block, (arr.name, i, *rest))
    rows = tuple(arr.chunks[0][i] for i in blocks)
    return Array(merge_graphs(arr.dask, dsk), name, (rows, *arr.chunks[1:]), arr.dtype)
