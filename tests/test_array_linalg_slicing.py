"""distml.array linear algebra, slicing, rechunking, joining and map_blocks/blockwise."""

from __future__ import annotations

import numpy as np
import pytest

import distml.array as da


@pytest.fixture
def data():
    return np.random.default_rng(2).standard_normal((40, 30))


def test_matmul_dot_tensordot(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    w = np.random.default_rng(3).standard_normal((30, 5))
    wd = da.from_array(w, chunks=(4, 2))  # contracted chunks differ from x's: aligned
    np.testing.assert_allclose((x @ wd).compute(), data @ w)
    np.testing.assert_allclose((x @ w).compute(), data @ w)
    np.testing.assert_allclose((data.T @ x).compute(), data.T @ data)
    np.testing.assert_allclose(da.dot(x, wd).compute(), data.dot(w))
    np.testing.assert_allclose(x.dot(w[:, 0]).compute(), data @ w[:, 0])
    v = da.from_array(data[:, 0], chunks=6)
    np.testing.assert_allclose((v @ x).compute(), data[:, 0] @ data)
    np.testing.assert_allclose((v @ v).compute(), data[:, 0] @ data[:, 0])
    t = np.random.default_rng(4).standard_normal((4, 5, 6))
    u = np.random.default_rng(5).standard_normal((5, 6, 3))
    got = da.tensordot(da.from_array(t, chunks=2), da.from_array(u, chunks=(2, 4, 3)), axes=2)
    np.testing.assert_allclose(got.compute(), np.tensordot(t, u, axes=2))
    got = da.tensordot(da.from_array(t, chunks=3), da.from_array(u, chunks=2),
                       axes=([1], [0]))
    np.testing.assert_allclose(got.compute(), np.tensordot(t, u, axes=([1], [0])))


def test_tall_skinny_gram_is_one_product_per_row_block(backend):
    data = np.random.default_rng(6).standard_normal((1000, 6))
    y = np.random.default_rng(7).standard_normal(1000)
    X = da.from_array(data, chunks=(100, 6)).persist()
    yd = da.from_array(y, chunks=100).persist()
    gram = X.T @ X
    assert gram.chunks == ((6,), (6,))
    graph = gram.__distml_graph__()
    products = [k for k in graph if "product" in k[0]]
    assert len(products) == 10
    assert not any(k[0].startswith("transpose") for k in graph)
    # 10 products and a tree of sums (groups of 4 + 4 + 2, then 3 -> 1); persisted blocks
    # are futures on a cluster, or numpy blocks inlined into the products in-process
    tasks = [k for k, v in graph.items() if isinstance(v, tuple)]
    assert len(tasks) == 10 + 4
    np.testing.assert_allclose(gram.compute(), data.T @ data)
    np.testing.assert_allclose((X.T @ yd).compute(), data.T @ y)


def test_transpose(backend):
    t = np.arange(24.0).reshape(2, 3, 4)
    x = da.from_array(t, chunks=(1, 2, 3))
    np.testing.assert_array_equal(x.T.compute(), t.T)
    np.testing.assert_array_equal(x.transpose(1, 0, 2).compute(), t.transpose(1, 0, 2))
    np.testing.assert_array_equal(da.transpose(x, (2, 0, 1)).compute(), t.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="not a permutation"):
        x.transpose(0, 0, 1)


def test_linalg_errors(data):
    x = da.from_array(data, chunks=(7, 9))
    with pytest.raises(ValueError, match=r"not aligned: 30 \(axis 1\) != 40 \(axis 0\)"):
        x @ x
    with pytest.raises(ValueError, match="not aligned"):
        da.tensordot(x, x, axes=([0], [1]))
    with pytest.raises(ValueError, match=r"do not broadcast: 2 != 5 \(batch axis 0\)"):
        da.ones((2, 3, 4), chunks=2) @ da.ones((5, 4, 2), chunks=2)
    with pytest.raises(ValueError, match=r"not aligned: 4 \(axis 2\) != 3 \(axis 1\)"):
        da.ones((2, 3, 4), chunks=2) @ da.ones((2, 3, 4), chunks=2)
    with pytest.raises(ValueError, match="operand 1 does not have enough dimensions"):
        da.matmul(x, 2.0)
    with pytest.raises(np.exceptions.AxisError, match="axis 3 of b"):
        da.tensordot(x, x, axes=([0], [3]))
    with pytest.raises(ValueError, match="repeated axis"):
        da.tensordot(x, x, axes=([0, 0], [0, 1]))
    with pytest.raises(ValueError, match="axes=3 needs"):
        da.tensordot(x, x, axes=3)
    with pytest.raises(TypeError, match="pair"):
        da.tensordot(x, x, axes=(0, 1, 1))
    with pytest.raises(TypeError, match="must be ints"):
        da.tensordot(x, x, axes=("i", "j"))
    y = x[x[:, 0] > 0]  # unknown row chunks
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        y.T @ y
    assert (y @ np.ones(30)).shape[0] != (y @ np.ones(30)).shape[0]  # unknown (nan) stays free


def test_batched_matmul_dot_tensordot_beyond_2d(backend):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2, 1, 5, 7))
    b = rng.standard_normal((3, 7, 4))
    x, y = da.from_array(a, chunks=(1, 1, 2, 3)), da.from_array(b, chunks=(2, 4, 3))
    got = x @ y
    assert got.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(got.compute(), a @ b)
    products = [k for k in got.dask if "matmul-product" in k[0]]
    # output blocks 2 x 2 x 3 x 2; the contracted axis (chunks 3,3,1 and 4,3) is aligned
    # to the common boundaries 0,3,4,6,7: 4 block products per output block
    assert len(products) == 2 * 2 * 3 * 2 * 4
    np.testing.assert_allclose(np.matmul(x, b).compute(), a @ b)
    np.testing.assert_allclose((a[0, 0, 0] @ y).compute(), a[0, 0, 0] @ b)
    np.testing.assert_allclose((y @ b[0, 0]).compute(), b @ b[0, 0])
    np.testing.assert_allclose(da.dot(x, y).compute(), np.dot(a, b))
    np.testing.assert_allclose(da.dot(y, b[0, 0]).compute(), np.dot(b, b[0, 0]))
    for left, right, axes in [(x, y, 0), (x, y, ([3], [1])), (x, y, (3, 1)),
                              (y, y, ([-2, 0], [1, 0])), (x, x, ([0, 3, 1], [0, 3, 1])),
                              (y, x, 0), (x, x, 4)]:
        want = np.tensordot(left.compute(), right.compute(), axes)
        got = da.tensordot(left, right, axes)
        assert got.shape == want.shape
        np.testing.assert_allclose(got.compute(), want, err_msg=str(axes))


@pytest.mark.parametrize("index", [
    5, -1, (3, 4), (slice(3, 25), slice(None)), (slice(None, None, 3), slice(2, None, 4)),
    (slice(None, None, -1), slice(20, 2, -3)), (slice(-5, None), -3), (Ellipsis, 2),
    (None, slice(1, 8), None, 3), (slice(4, 4),), (slice(8, 1, -2), Ellipsis, None),
    (slice(100, 200),), (slice(35, 3, -7), slice(None, None, -1)),
])
def test_basic_slicing(backend, data, index):
    x = da.from_array(data, chunks=(7, 9))
    got = x[index]
    expected = data[index]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.compute(), expected)


def test_integer_array_indexing(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    idx = np.array([39, 0, 8, 8, -1, 15, 3])
    np.testing.assert_array_equal(x[idx].compute(), data[idx])
    np.testing.assert_array_equal(x[:, [29, 1, 10]].compute(), data[:, [29, 1, 10]])
    np.testing.assert_array_equal(x[2:30, idx[:3] % 30].compute(), data[2:30, idx[:3] % 30])
    with pytest.raises(IndexError, match="out of bounds"):
        x[np.array([40])]


def test_boolean_mask_and_chunk_sizes(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    mask = x[:, 0] > 0
    y = x[mask]
    assert np.isnan(y.shape[0]) and y.shape[1] == 30
    assert all(np.isnan(c) for c in y.chunks[0])
    np.testing.assert_array_equal(y.compute(), data[data[:, 0] > 0])
    np.testing.assert_allclose(y.sum(axis=0).compute(), data[data[:, 0] > 0].sum(axis=0))
    np.testing.assert_allclose((y * 2 + 1).compute(), data[data[:, 0] > 0] * 2 + 1)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        y[:3]
    assert y.compute_chunk_sizes() is y
    assert y.shape == data[data[:, 0] > 0].shape
    np.testing.assert_array_equal(y[:3].compute(), data[data[:, 0] > 0][:3])
    npmask = data[:, 1] > 0.5
    np.testing.assert_array_equal(x[npmask].compute(), data[npmask])
    np.testing.assert_array_equal(x[:, data[0] > 0].compute(), data[:, data[0] > 0])
    with pytest.raises(IndexError, match="does not match"):
        x[np.ones(5, bool)]


def test_indexing_errors(data):
    x = da.from_array(data, chunks=(7, 9))
    with pytest.raises(IndexError, match="too many indices"):
        x[1, 2, 3]
    with pytest.raises(IndexError, match="out of bounds for axis 1 with size 30"):
        x[0, 30]
    with pytest.raises(ValueError, match="step cannot be zero"):
        x[::0]


def test_rechunk(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    for chunks in [(10, 10), ((1, 39), (30,)), (-1, 4), {0: 13}, "auto"]:
        y = x.rechunk(chunks)
        np.testing.assert_array_equal(y.compute(), data)
    assert x.rechunk({1: 5}).chunks == (x.chunks[0], (5,) * 6)
    assert da.rechunk(x, (7, 9)) is x
    with pytest.raises(ValueError, match="sum to"):
        x.rechunk(((20, 10), (30,)))
    with pytest.raises(ValueError, match="invalid axes"):
        x.rechunk({3: 2})


def test_concatenate_and_stack(backend, data):
    a = da.from_array(data, chunks=(7, 9))
    b = da.from_array(data[:10], chunks=(3, 5))
    np.testing.assert_array_equal(da.concatenate([a, b]).compute(),
                                  np.concatenate([data, data[:10]]))
    np.testing.assert_array_equal(da.concatenate([a, a[:, :4]], axis=1).compute(),
                                  np.concatenate([data, data[:, :4]], axis=1))
    np.testing.assert_array_equal(da.stack([a, a * 2], axis=1).compute(),
                                  np.stack([data, data * 2], axis=1))
    with pytest.raises(ValueError, match="differ on axis 1"):
        da.concatenate([a, a[:, :3]])
    with pytest.raises(ValueError, match="same shape"):
        da.stack([a, b])


def test_map_blocks_and_blockwise(backend, data):
    x = da.from_array(data, chunks=(7, 9))
    np.testing.assert_allclose(x.map_blocks(np.cumsum, axis=1, dtype=float).compute(),
                               np.concatenate([np.cumsum(data[:, s], axis=1) for s in
                                               [slice(0, 9), slice(9, 18), slice(18, 27),
                                                slice(27, 30)]], axis=1))
    row_sums = da.map_blocks(np.sum, x, axis=1, drop_axis=1, dtype=float)
    np.testing.assert_allclose(row_sums.compute(), data.sum(axis=1))
    expanded = da.map_blocks(lambda b: b[:, :, None], x, new_axis=2, dtype=float)
    np.testing.assert_array_equal(expanded.compute(), data[:, :, None])
    heads = x.map_blocks(lambda b: b[:2], chunks=(2, x.chunks[1]), dtype=float)
    assert heads.shape == (12, 30)
    np.testing.assert_array_equal(heads.compute()[2:4], data[7:9])
    v = da.from_array(data[0], chunks=9)
    got = da.blockwise(np.add, "ij", x, "ij", v, "j", dtype=float)
    np.testing.assert_allclose(got.compute(), data + data[0])
    inner = da.blockwise(lambda a, b: sum(p @ q for p, q in zip(a, b)), "ik", x, "ij",
                         da.from_array(data.T, chunks=(9, 8)), "jk", dtype=float)
    np.testing.assert_allclose(inner.compute(), data @ data.T)
    with pytest.raises(ValueError, match="appear in no input"):
        da.blockwise(np.add, "ijk", x, "ij", dtype=float)


CUBE = np.random.default_rng(9).standard_normal((6, 5, 4))
FANCY = [
    ([1, 5, 2], [0, 3, 4]), ([1, -1], slice(None), [0, 3]), (0, slice(None), [1, 2]),
    (slice(None), 0, [1, 2]), ([[0], [1]], 0), ([[0, 1], [2, 3]], [1, 2]), (Ellipsis, [0, 1]),
    ([0, 1], None, [0, 1]), ([0, 1], [0, 1], None), (None, [0, 1], [0, 1]),
    (slice(1, 5), [[0], [4]], [1, 3]), (CUBE[:, 0, 0] > 0,), (slice(None), CUBE[0, :, 0] > 0),
    (CUBE[:, :, 0] > 0,), (CUBE > 0,), (slice(None), CUBE[0] > 0), ([],), ([], []),
    (np.array([3]), [1, 2], [[0], [3]]), (slice(None, None, -1), [4, 0], slice(None)),
    (0, [1], 0), ([2, 2, 2],), ([[5]],), (CUBE[:, 0, 0] > 9,),
    (1, [0, 1, 2, 3, 4], [3, 2, 1, 0, 0]), ([1, 2], Ellipsis, [0, 1]), (np.int64(2), [1]),
    ([0, 1], 2, None, [1, 2]), ([-6, 5], slice(0, 0), [-4]),
]


@pytest.mark.parametrize("index", FANCY, ids=[str(i) for i in range(len(FANCY))])
def test_fancy_indexing_matches_numpy(backend, index):
    x = da.from_array(CUBE, chunks=(4, 2, 3))
    got, expected = x[index], CUBE[index]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.compute(), expected)


def test_chained_and_distributed_masks(backend):
    x = da.from_array(CUBE, chunks=(4, 2, 3))
    np.testing.assert_array_equal(x[[1, 5, 2], :][:, [0, 3]].compute(),
                                  CUBE[[1, 5, 2], :][:, [0, 3]])
    m = x > 0
    for got, expected in [(x[m], CUBE[CUBE > 0]), (x[:, m[0]], CUBE[:, CUBE[0] > 0]),
                          (x[0][m[0]], CUBE[0][CUBE[0] > 0]),
                          (x[:, :, m[0, 0, :]], CUBE[:, :, CUBE[0, 0] > 0]),
                          (x[1, m[0, :, 0]], CUBE[1, CUBE[0, :, 0] > 0])]:
        assert np.isnan(got.shape).sum() == 1
        np.testing.assert_array_equal(got.compute(), expected)
    y = x[m]
    y.compute_chunk_sizes()
    assert y.shape == (int((CUBE > 0).sum()),)


def test_fancy_indexing_errors():
    x = da.from_array(CUBE, chunks=(4, 2, 3))
    m = x > 0
    for index, err, match in [
        ([0, 9], IndexError, "index 9 is out of bounds for axis 0 with size 6"),
        ((slice(None), [-6]), IndexError, "index -6 is out of bounds for axis 1 with size 5"),
        ((0, [1], 7), IndexError, "index 7 is out of bounds for axis 2 with size 4"),
        (([0, 1], [0, 1, 2]), IndexError, r"could not be broadcast together with shapes \(2,\) \(3,\)"),
        (1.5, IndexError, "unsupported index 1.5"),
        ([1.0], IndexError, "integer or boolean type, got float64"),
        (True, IndexError, "boolean scalar"),
        ((0, slice(None), m[0, 0]), IndexError, "index in two steps"),
        ((m[0], [1]), IndexError, "cannot be combined"),
        (np.ones((6, 4), bool), IndexError, r"does not match axes 0..1 of shape \(6, 5\)"),
        ((m[:, 0, 0] > 0).astype(int), IndexError, "distml integer Array"),
        ((0, 0, 0, 0), IndexError, "too many indices"),
    ]:
        with pytest.raises(err, match=match):
            x[index]
    y = x[m[:, 0, 0]]  # unknown length on axis 0
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        y[[0, 1]]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        y[np.ones(3, bool)]
