"""distml.array against numpy on random shapes, chunkings and dtypes (hypothesis).

Shapes include zero-length axes, chunkings include single blocks, uneven last blocks and
empty blocks, data includes NaN; each property runs in-process and on a 2-worker cluster.
Where numpy raises, distml must raise the same exception type.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distml.array as da

DTYPES = [np.float64, np.float32, np.int32, np.int64, np.bool_]
SETTINGS = settings(derandomize=True, max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@st.composite
def chunking(draw, n: int):
    """Block lengths of one axis of length ``n``: one int, or explicit uneven lengths."""
    if n == 0:
        return (0,)
    if draw(st.booleans()):
        return draw(st.integers(1, n))
    cuts = draw(st.lists(st.integers(0, n), max_size=3))
    bounds = sorted({0, n, *cuts}) if not draw(st.booleans()) else sorted([0, n, *cuts])
    return tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))


def make_data(shape: tuple, dtype, seed: int, nan: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == bool:
        return rng.random(shape) < 0.5
    if dtype.kind == "i":
        return rng.integers(-20, 20, shape).astype(dtype)
    data = (rng.standard_normal(shape) * 10).astype(dtype)
    if nan:
        data[rng.random(shape) < 0.2] = np.nan
    return data


@st.composite
def arrays(draw, max_dims: int = 3, min_side: int = 0, dtypes=tuple(DTYPES)):
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(min_side, 7), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(dtypes))
    data = make_data(shape, dtype, draw(st.integers(0, 2**16)), draw(st.booleans()))
    chunks = tuple(draw(chunking(n)) for n in shape)
    return data, chunks


def outcome(func):
    """``("ok", value)`` or ``("error", exception type)`` of ``func()`` (warnings off)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            value = func()
            if isinstance(value, da.Array):
                value = value.compute()
            return "ok", value
        except (ValueError, TypeError, IndexError) as exc:
            return "error", type(exc)


def assert_same(got, expected, dtype=None) -> None:
    assert got[0] == expected[0], (got, expected)
    if got[0] == "error":
        assert issubclass(got[1], expected[1]) or issubclass(expected[1], got[1]), (got, expected)
        return
    g, e = np.asarray(got[1]), np.asarray(expected[1])
    assert g.shape == e.shape
    assert g.dtype == e.dtype, (g.dtype, e.dtype)
    if e.dtype.kind in "fc":
        tight = np.dtype(dtype or e.dtype) == np.float64 and e.dtype == np.float64
        rtol, atol = (1e-9, 1e-9) if tight else (2e-3, 2e-3)
        scale = np.max(np.abs(e[np.isfinite(e)]), initial=1.0)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol * scale)
    else:
        np.testing.assert_array_equal(g, e)


REDUCTIONS = ["sum", "prod", "mean", "var", "std", "min", "max", "any", "all", "argmin",
              "argmax", "nansum", "nanprod", "nanmean", "nanvar", "nanstd", "nanmin", "nanmax",
              "nanargmin", "nanargmax"]


@SETTINGS
@given(case=arrays(), name=st.sampled_from(REDUCTIONS), keepdims=st.booleans(),
       data=st.data())
def test_reductions_match_numpy(backend, case, name, keepdims, data):
    values, chunks = case
    ndim = values.ndim
    if name.endswith(("argmin", "argmax")):
        axis = data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    else:
        axis = data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                                   st.sets(st.integers(0, ndim - 1), min_size=1).map(tuple)))
    if name in ("prod", "nanprod") and values.dtype.kind == "f":
        values = values / 20 + 1  # keep products finite
    elif name in ("prod", "nanprod") and values.dtype.kind == "i":
        values = values % 3
    x = da.from_array(values, chunks=chunks)
    expected = outcome(lambda: getattr(np, name)(values, axis=axis, keepdims=keepdims))
    got = outcome(lambda: getattr(da, name)(x, axis=axis, keepdims=keepdims))
    assert_same(got, expected, values.dtype)
    via_numpy = outcome(lambda: getattr(np, name)(x, axis=axis, keepdims=keepdims))
    assert_same(via_numpy, expected, values.dtype)


BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.greater, np.equal, np.logical_and,
          np.true_divide]


@st.composite
def broadcast_pairs(draw):
    """Two arrays whose shapes broadcast (axes of length 1, missing leading axes)."""
    a, chunks_a = draw(arrays())
    shape_b = [1 if draw(st.booleans()) and draw(st.booleans()) else n for n in a.shape]
    shape_b = tuple(shape_b[draw(st.integers(0, a.ndim - 1)):])
    dtype = draw(st.sampled_from(DTYPES))
    b = make_data(shape_b, dtype, draw(st.integers(0, 2**16)), draw(st.booleans()))
    chunks_b = tuple(draw(chunking(n)) for n in shape_b)
    return (a, chunks_a), (b, chunks_b)


@SETTINGS
@given(pair=broadcast_pairs(), op=st.sampled_from(BINARY), swap=st.booleans(),
       numpy_operand=st.booleans())
def test_elementwise_broadcasting_matches_numpy(backend, pair, op, swap, numpy_operand):
    (a, ca), (b, cb) = pair
    if swap:
        (a, ca), (b, cb) = (b, cb), (a, ca)
    if op is np.subtract and a.dtype == bool and b.dtype == bool:
        op = np.logical_xor  # numpy refuses boolean subtraction
    x = da.from_array(a, chunks=ca)
    y = b if numpy_operand else da.from_array(b, chunks=cb)
    assert_same(outcome(lambda: op(x, y)), outcome(lambda: op(a, b)))
    assert_same(outcome(lambda: da.where(x > 0, x, y)), outcome(lambda: np.where(a > 0, a, b)))
    assert_same(outcome(lambda: np.clip(x, -3, 4)), outcome(lambda: np.clip(a, -3, 4)))


@st.composite
def matmul_pairs(draw):
    """Operands of ``@``: vectors, matrices and stacks with broadcasting batch axes."""
    k = draw(st.integers(0, 6))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64]))

    def operand(core: tuple) -> tuple:
        mine = tuple(1 if draw(st.booleans()) else n for n in batch)
        mine = mine[draw(st.integers(0, len(mine))):] if core != (k,) else ()
        shape = mine + core
        data = make_data(shape, dtype, draw(st.integers(0, 2**16)), False)
        return data, tuple(draw(chunking(n)) for n in shape)

    a = operand((k,) if draw(st.booleans()) else (draw(st.integers(0, 5)), k))
    b = operand((k,) if draw(st.booleans()) else (k, draw(st.integers(0, 5))))
    return a, b


@SETTINGS
@given(pair=matmul_pairs())
def test_matmul_dot_match_numpy(backend, pair):
    (a, ca), (b, cb) = pair
    x, y = da.from_array(a, chunks=ca), da.from_array(b, chunks=cb)
    assert_same(outcome(lambda: x @ y), outcome(lambda: a @ b))
    assert_same(outcome(lambda: np.matmul(a, y)), outcome(lambda: np.matmul(a, b)))
    assert_same(outcome(lambda: da.dot(x, y)), outcome(lambda: np.dot(a, b)))


@SETTINGS
@given(case=arrays(dtypes=(np.float64, np.int32)), other=arrays(dtypes=(np.float64,)),
       data=st.data())
def test_tensordot_any_axes_matches_numpy(backend, case, other, data):
    (a, ca), (b, cb) = case, other
    n = data.draw(st.integers(0, min(a.ndim, b.ndim)))
    ax_a = data.draw(st.permutations(range(a.ndim)))[:n]
    ax_b = data.draw(st.permutations(range(b.ndim)))[:n]
    # make the contracted lengths agree by building b with a's lengths on those axes
    shape_b = list(b.shape)
    for i, j in zip(ax_a, ax_b):
        shape_b[j] = a.shape[i]
    b = make_data(tuple(shape_b), np.float64, 7, True)
    cb = tuple(data.draw(chunking(m)) for m in shape_b)
    x, y = da.from_array(a, chunks=ca), da.from_array(b, chunks=cb)
    axes = (list(ax_a), list(ax_b))
    assert_same(outcome(lambda: da.tensordot(x, y, axes)),
                outcome(lambda: np.tensordot(a, b, axes)))


@st.composite
def index_items(draw, shape: tuple):
    """A numpy index for ``shape``: ints, slices, integer arrays, masks, None, Ellipsis."""
    items = []
    for n in shape:
        kind = draw(st.sampled_from(["slice", "int", "ints", "mask", "full"]))
        if kind == "slice":
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            step = draw(st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2])))
            items.append(slice(draw(bound), draw(bound), step))
        elif kind == "int":
            items.append(draw(st.integers(-n - 1, n)))  # sometimes out of range
        elif kind == "ints":
            items.append(draw(st.lists(st.integers(-n - 1, n), max_size=4)))
        elif kind == "mask":
            items.append(np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)),
                                  dtype=bool))
        else:
            items.append(slice(None))
        if draw(st.integers(0, 5)) == 0:
            items.append(None)
    if items and draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(items) - 1))
        items = items[:cut] + [Ellipsis]
    return tuple(items)


@SETTINGS
@given(case=arrays(), data=st.data())
def test_indexing_matches_numpy(backend, case, data):
    values, chunks = case
    index = data.draw(index_items(values.shape))
    x = da.from_array(values, chunks=chunks)
    expected = outcome(lambda: values[index])
    got = outcome(lambda: x[index])
    assert_same(got, expected)


@SETTINGS
@given(case=arrays(), data=st.data())
def test_concatenate_stack_rechunk_match_numpy(backend, case, data):
    values, chunks = case
    axis = data.draw(st.integers(-values.ndim, values.ndim - 1))
    other = values[::-1] if values.shape[0] else values
    new_chunks = tuple(data.draw(chunking(n)) for n in values.shape)
    x = da.from_array(values, chunks=chunks)
    y = da.from_array(other, chunks=new_chunks)
    assert_same(outcome(lambda: np.concatenate([x, y], axis=axis)),
                outcome(lambda: np.concatenate([values, other], axis=axis)))
    assert_same(outcome(lambda: np.stack([x, y], axis=axis)),
                outcome(lambda: np.stack([values, other], axis=axis)))
    assert_same(outcome(lambda: x.rechunk(new_chunks)), outcome(lambda: values))
    assert_same(outcome(lambda: x.T.astype(np.float32)),
                outcome(lambda: values.T.astype(np.float32)))


@pytest.mark.parametrize("shape,chunks", [((0,), 3), ((0, 4), (2, 2)), ((3, 0), 2),
                                          ((5,), 5), ((1, 1), 1)])
def test_empty_and_single_chunk_edge_cases(backend, shape, chunks):
    values = np.ones(shape)
    x = da.from_array(values, chunks=chunks)
    for name in ["sum", "mean", "prod", "nansum", "nanmean", "max", "argmax", "std"]:
        assert_same(outcome(lambda: getattr(da, name)(x)),
                    outcome(lambda: getattr(np, name)(values)))
        assert_same(outcome(lambda: getattr(da, name)(x, axis=0)),
                    outcome(lambda: getattr(np, name)(values, axis=0)))
    assert_same(outcome(lambda: x @ x.T), outcome(lambda: values @ values.T))
    assert_same(outcome(lambda: x[[]]), outcome(lambda: values[[]]))
    assert_same(outcome(lambda: operator.neg(x)), outcome(lambda: -values))
