"""distml.array reductions compared with numpy, on threads and on a cluster."""

from __future__ import annotations

import warnings

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


NAN_DATA = np.random.default_rng(12).standard_normal((13, 11))
NAN_DATA[NAN_DATA > 1] = np.nan
NAN_DATA[:, 3] = np.nan  # an all-NaN column
NAN_DATA[5] = np.nan  # an all-NaN row


@pytest.mark.parametrize("name", ["nansum", "nanprod", "nanmin", "nanmax", "nanmean",
                                  "nanvar", "nanstd"])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_nan_reductions_match_numpy(backend, name, axis):
    x = da.from_array(NAN_DATA, chunks=(4, 3))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = getattr(np, name)(NAN_DATA, axis=axis, keepdims=True)
        got = getattr(da, name)(x, axis=axis, keepdims=True)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.compute(), expected, rtol=1e-10)
        via_numpy = getattr(np, name)(x, axis=axis)  # __array_function__
        assert isinstance(via_numpy, da.Array)
        np.testing.assert_allclose(via_numpy.compute(), expected.squeeze(axis=axis) if
                                   axis is not None else expected.reshape(()), rtol=1e-10)


def test_nan_reductions_edge_cases(backend):
    for dtype in [np.int32, bool, np.float32]:
        a = (NAN_DATA > 0).astype(dtype) if dtype is bool else np.arange(20, dtype=dtype)
        x = da.from_array(a, chunks=3)
        for name in ["nansum", "nanmean", "nanvar", "nanmax"]:
            np.testing.assert_allclose(getattr(da, name)(x, axis=0).compute(),
                                       getattr(np, name)(a, axis=0), rtol=1e-6)
            assert getattr(da, name)(x, axis=0).dtype == getattr(np, name)(a, axis=0).dtype
    empty = da.from_array(np.empty((0, 3)), chunks=2)
    np.testing.assert_array_equal(da.nansum(empty, axis=0).compute(), np.zeros(3))
    with pytest.raises(ValueError, match="zero-size array"):
        da.nanmin(empty).compute()


@pytest.mark.parametrize("name", ["nanargmin", "nanargmax"])
def test_nan_arg_reductions(backend, name):
    a = NAN_DATA.copy()
    a[:, 3] = 0.5
    a[5] = np.inf
    a[5, 2] = np.nan
    x = da.from_array(a, chunks=(4, 3))
    for axis in [None, 0, 1]:
        np.testing.assert_array_equal(getattr(da, name)(x, axis=axis).compute(),
                                      getattr(np, name)(a, axis=axis))
        np.testing.assert_array_equal(getattr(np, name)(x, axis=axis).compute(),
                                      getattr(np, name)(a, axis=axis))
    with pytest.raises(ValueError, match="All-NaN slice"):
        getattr(da, name)(da.from_array(NAN_DATA, chunks=4), axis=0).compute()


def test_array_function_dispatch(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    y = da.from_array(data[:5], chunks=3)
    checks = [
        (np.sum(x), data.sum()), (np.sum(x, 0, keepdims=True), data.sum(0, keepdims=True)),
        (np.std(x, axis=1, ddof=1), data.std(axis=1, ddof=1)), (np.amax(x, 0), data.max(0)),
        (np.concatenate([x, y]), np.concatenate([data, data[:5]])),
        (np.concatenate([x, data[:2]], axis=0), np.concatenate([data, data[:2]])),
        (np.stack([x, x], axis=2), np.stack([data, data], axis=2)),
        (np.dot(x, data.T), data @ data.T), (np.matmul(x.T, x), data.T @ data),
        (np.tensordot(x, x, axes=([0], [0])), data.T @ data),
        (np.where(x > 0, x, -1), np.where(data > 0, data, -1)),
        (np.clip(x, -0.5, 0.5), np.clip(data, -0.5, 0.5)),
        (np.clip(x, a_min=None, a_max=0.5), np.clip(data, None, 0.5)),
        (np.transpose(x), data.T), (np.round(x, 2), np.round(data, 2)),
        (np.squeeze(x[:1]), data[0]), (np.expand_dims(x, (0, 2)), data[None, :, None]),
        (np.nan_to_num(da.from_array(NAN_DATA, chunks=4), nan=-1.0),
         np.nan_to_num(NAN_DATA, nan=-1.0)),
        (np.isclose(x, x + 1e-12), np.isclose(data, data + 1e-12)),
        (np.zeros_like(x), np.zeros_like(data)), (np.full_like(x, 3), np.full_like(data, 3)),
        (np.argmax(x, axis=0), data.argmax(axis=0)), (np.any(x > 2), (data > 2).any()),
    ]
    for got, expected in checks:
        assert isinstance(got, da.Array)
        np.testing.assert_allclose(got.compute(), expected, rtol=1e-10)
    assert np.shape(x) == (40, 30) and np.ndim(x) == 2 and np.size(x) == 1200
    assert np.size(x, 1) == 30


def test_unsupported_numpy_function_is_a_clear_type_error(data):
    x = da.from_array(data, chunks=(7, 9))
    with pytest.raises(TypeError, match=r"np.cumsum is not supported for distml arrays") as e:
        np.cumsum(x)
    listed = str(e.value).split("Supported: ")[1]
    from distml.array.dispatch import HANDLED
    names = {f"np.{f.__name__}" for f in HANDLED}
    assert set(listed.replace(", and every numpy ufunc", "").split(", ")) == names
    with pytest.raises(TypeError, match="one argument"):
        np.where(x > 0)
    with pytest.raises(ValueError, match="cannot squeeze axis 0 of length 40"):
        np.squeeze(x, axis=0)
    with pytest.raises(TypeError, match="out="):
        np.concatenate([x, x], out=np.empty((80, 30)))
    with pytest.raises(TypeError, match="np.sum on distml arrays: .*'where'"):
        np.sum(x, where=x > 0)


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
