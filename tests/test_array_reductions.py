"""distml.array reductions compared with numpy, on threads and on a cluster."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import distml.array as da


@pytest.fixture
def data():
    return np.random.default_rng(1).standard_normal((40, 30))


AXES = [None, 0, 1, -1, (0, 1)]


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "min", "max", "prod"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(backend, data, name, axis, keepdims):
    x = da.from_array(data, chunks=(7, 9))
    values = data / 2 + 1 if name == "prod" else data
    xv = x / 2 + 1 if name == "prod" else x
    got = getattr(xv, name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(values, axis=axis, keepdims=keepdims)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.compute(), expected, rtol=1e-10)
    np.testing.assert_allclose(getattr(da, name)(xv, axis=axis, keepdims=keepdims).compute(),
                               expected, rtol=1e-10)


@pytest.mark.parametrize("axis", AXES)
def test_any_all(backend, data, axis):
    x = da.from_array(data, chunks=(7, 9))
    for cond, ref in [(x > 2, data > 2), (x > -3, data > -3)]:
        np.testing.assert_array_equal(cond.any(axis=axis).compute(), ref.any(axis=axis))
        np.testing.assert_array_equal(da.all(cond, axis=axis).compute(), ref.all(axis=axis))


def test_uneven_chunks_and_split_every(backend, data):
    x = da.from_array(data, chunks=((1, 10, 3, 26), (29, 1)))
    for split_every in (2, 3, 8):
        np.testing.assert_allclose(x.sum(axis=0, split_every=split_every).compute(),
                                   data.sum(axis=0))
    np.testing.assert_allclose(da.mean(x, axis=1).compute(), data.mean(axis=1))


def test_integer_and_dtype(backend):
    a = np.arange(60).reshape(6, 10)
    x = da.from_array(a, chunks=(4, 3))
    assert x.sum().dtype == a.sum().dtype
    assert x.sum().compute() == a.sum()
    np.testing.assert_allclose(x.mean(axis=0).compute(), a.mean(axis=0))
    assert x.sum(dtype=np.float32).dtype == np.float32


def test_var_std_stable_with_offset(backend):
    rng = np.random.default_rng(5)
    data = 1e9 + rng.standard_normal((4000, 3)) * 1e-2
    x = da.from_array(data, chunks=(300, 2))
    np.testing.assert_allclose(x.var(axis=0).compute(), data.var(axis=0), rtol=1e-6)
    np.testing.assert_allclose(x.std(axis=0, ddof=1).compute(), data.std(axis=0, ddof=1),
                               rtol=1e-6)
    np.testing.assert_allclose(x.std().compute(), data.std(), rtol=1e-6)


@pytest.mark.parametrize("ddof", [0, 1, 2])
def test_ddof(backend, data, ddof):
    x = da.from_array(data, chunks=(7, 9))
    np.testing.assert_allclose(x.var(axis=1, ddof=ddof).compute(), data.var(axis=1, ddof=ddof))


@pytest.mark.parametrize("name", ["argmin", "argmax"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_arg_reductions(backend, data, name, axis):
    x = da.from_array(data, chunks=(7, 9))
    np.testing.assert_array_equal(getattr(x, name)(axis=axis).compute(),
                                  getattr(np, name)(data, axis=axis))
    np.testing.assert_array_equal(
        getattr(da, name)(x, axis=axis, keepdims=True).compute(),
        getattr(np, name)(data, axis=axis, keepdims=True))


def test_arg_across_chunk_boundaries_and_ties(backend):
    a = np.zeros((20, 6))
    a[13, 4] = 5.0
    a[6, 1] = 5.0  # tie: the first in flat order wins
    a[19, 0] = -1
    x = da.from_array(a, chunks=(7, 4))
    assert x.argmax().compute() == np.argmax(a)
    np.testing.assert_array_equal(x.argmax(axis=0).compute(), a.argmax(axis=0))
    np.testing.assert_array_equal(x.argmin(axis=1).compute(), a.argmin(axis=1))
    b = np.array([3.0, 1.0, 1.0, 0.5, 0.5, np.nan, 2.0])
    y = da.from_array(b, chunks=2)
    assert y.argmin().compute() == np.argmin(b) == 5
    assert da.from_array(b[:5], chunks=2).argmin().compute() == 3


def test_reduction_errors(data):
    x = da.from_array(data, chunks=(7, 9))
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        x.mean(axis=(0, 0))
    with pytest.raises(TypeError, match="one axis"):
        x.argmax(axis=(0, 1))
    with pytest.raises(TypeError, match="out="):
        x.sum(out=np.empty(3))
    with pytest.raises(ValueError, match="zero-size array"):
        da.from_array(np.empty((0, 3)), chunks=2).min().compute()


def test_numpy_functions_dispatch_to_methods(data):
    x = da.from_array(data, chunks=(7, 9))
    assert isinstance(np.sum(x, axis=0), da.Array)
    np.testing.assert_allclose(np.mean(x).compute(), data.mean())


@st.composite
def _arrays_and_chunks(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    seed = draw(st.integers(0, 1000))
    data = np.random.default_rng(seed).standard_normal(shape) * 10 + 3
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                          st.sets(st.integers(0, ndim - 1), min_size=1).map(tuple)))
    return data, chunks, axis


@settings(derandomize=True, max_examples=30, deadline=None)
@given(case=_arrays_and_chunks(), keepdims=st.booleans(),
       name=st.sampled_from(["sum", "mean", "var", "std", "min", "max"]))
def test_reductions_property(case, keepdims, name):
    data, chunks, axis = case
    x = da.from_array(data, chunks=chunks)
    got = getattr(x, name)(axis=axis, keepdims=keepdims, split_every=2)
    expected = getattr(np, name)(data, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got.compute(), expected, rtol=1e-9, atol=1e-12)


@settings(derandomize=True, max_examples=30, deadline=None)
@given(case=_arrays_and_chunks(), name=st.sampled_from(["argmin", "argmax"]))
def test_arg_property(case, name):
    data, chunks, axis = case
    if isinstance(axis, tuple):
        axis = axis[0]
    x = da.from_array(np.round(data), chunks=chunks)  # rounding makes ties
    np.testing.assert_array_equal(getattr(x, name)(axis=axis, split_every=3).compute(),
                                  getattr(np, name)(np.round(data), axis=axis))
