"""distml.dataframe against pandas: on a real two-worker cluster and in-process without one."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distml.dataframe as dd
from distml.array import Array


def frame(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.integers(-5, 10, n),
        "b": rng.normal(size=n),
        "c": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "s": [f"s{i % 7}" for i in range(n)],
    })


def same(got: pd.DataFrame | pd.Series, expected: pd.DataFrame | pd.Series, **kw) -> None:
    """Equal up to the row index, which partitions number on their own."""
    assert_equal = (pd.testing.assert_frame_equal if isinstance(expected, pd.DataFrame)
                    else pd.testing.assert_series_equal)
    assert_equal(got.reset_index(drop=True), expected.reset_index(drop=True), **kw)


# ------------------------------------------------------------------------- read_csv
def write_csvs(tmp_path) -> pd.DataFrame:
    """Three files: LF endings, CRLF endings, and no newline at the end."""
    parts = []
    for k in range(3):
        df = frame(40 + 7 * k, seed=k)
        df.to_csv(tmp_path / f"part{k}.csv", index=False,
                  lineterminator="\r\n" if k == 1 else "\n")
        parts.append(pd.read_csv(tmp_path / f"part{k}.csv"))
    last = tmp_path / "part2.csv"
    last.write_bytes(last.read_bytes().rstrip(b"\n"))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("blocksize", [64, "1KB", None])
def test_read_csv_glob_blocks(backend, tmp_path, blocksize):
    expected = write_csvs(tmp_path)
    df = dd.read_csv(str(tmp_path / "part*.csv"), blocksize=blocksize)
    if blocksize == 64:
        assert df.npartitions > 3 * 20
    got = df.compute()
    assert len(got) == len(expected) == len(df)
    same(got, expected)


@pytest.mark.parametrize("blocksize", [1, 13])
def test_read_csv_tiny_blocks(tmp_path, blocksize):
    """Thousands of partitions, run on the in-process thread pool (cheap tasks)."""
    from distml.dataframe.methods import concat
    from distml.local import get_threaded

    expected = write_csvs(tmp_path)
    df = dd.read_csv(str(tmp_path / "part*.csv"), blocksize=blocksize)
    assert df.npartitions > len(expected)
    same(concat(get_threaded(df.__distml_graph__(), df.__distml_keys__())), expected)


def test_read_block_boundaries(tmp_path):
    """Concatenated byte ranges give every data line exactly once, for any block size."""
    from distml.dataframe.io import read_block

    lines = [b"h1,h2\n"] + [b"%d,%s\n" % (i, b"x" * (i % 11)) for i in range(60)]
    for ending in (b"\n", b"\r\n"):
        for trailing in (True, False):
            data = b"".join(lines).replace(b"\n", ending)
            if not trailing:
                data = data[:-len(ending)]
            path = tmp_path / "f.csv"
            path.write_bytes(data)
            body = data[data.index(b"\n") + 1:]
            for size in range(1, 40):
                blocks = [read_block(str(path), off, size, True)
                          for off in range(0, len(data), size)]
                assert b"".join(blocks) == body, (ending, trailing, size)
                nonempty = [b for b in blocks if b]
                assert all(b.endswith(ending) for b in nonempty[:-1])


def test_read_csv_meta_without_compute(tmp_path):
    write_csvs(tmp_path)
    df = dd.read_csv(tmp_path / "part*.csv", blocksize=200)
    assert list(df.columns) == ["a", "b", "c", "s"]
    assert df.dtypes["a"] == np.int64 and df.dtypes["b"] == np.float64
    assert len(df.meta) == 0
    assert df.npartitions == sum(-(-os.path.getsize(tmp_path / f"part{k}.csv") // 200)
                                 for k in range(3))


def test_read_csv_options(backend, tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("id\tval\tday\tnote\n1\t2.5\t2024-01-02\tx\n2\tNA?\t2024-01-03\ty\n"
                    "3\t7\t2024-01-04\tz\n")
    kw = dict(sep="\t", usecols=["id", "val", "day"], dtype={"id": "float64"},
              na_values=["NA?"], parse_dates=["day"])
    df = dd.read_csv(str(path), blocksize=20, **kw)
    expected = pd.read_csv(path, **kw)
    assert list(df.columns) == ["id", "val", "day"]
    assert df.dtypes.to_dict() == expected.dtypes.to_dict()
    same(df.compute(), expected)


def test_read_csv_header_handling(backend, tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("x,y\n1,2\n3,4\n5,6\n")
    renamed = dd.read_csv(path, blocksize=5, names=["p", "q"], header=0)
    same(renamed.compute(), pd.DataFrame({"p": [1, 3, 5], "q": [2, 4, 6]}))
    raw = dd.read_csv(path, blocksize=5, header=None)
    same(raw.compute(), pd.read_csv(path, header=None))
    named = dd.read_csv(path, blocksize=5, names=["p", "q"])
    same(named.compute(), pd.read_csv(path, names=["p", "q"]))
    assert len(named) == 4


def test_read_csv_many_files_header_in_each(backend, tmp_path):
    for k in range(4):
        (tmp_path / f"f{k}.csv").write_text("k,v\n" + "".join(f"{k},{i}\n" for i in range(k)))
    got = dd.read_csv(tmp_path / "f*.csv", blocksize=3).compute()
    assert got["k"].tolist() == [1, 2, 2, 3, 3, 3]
    assert got["v"].tolist() == [0, 0, 1, 0, 1, 2]


def test_read_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        dd.read_csv(tmp_path / "nothing-here*.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        dd.read_csv(tmp_path / "missing.csv")
    path = tmp_path / "ok.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(TypeError, match="bogus"):
        dd.read_csv(path, bogus=1)
    with pytest.raises(ValueError, match="zzz"):
        dd.read_csv(path, usecols=["a", "zzz"])
    with pytest.raises(ValueError, match="skiprows"):
        dd.read_csv(path, skiprows=1)
    with pytest.raises(ValueError, match="invalid size"):
        dd.read_csv(path, blocksize="lots")
    with pytest.raises(ValueError, match="positive"):
        dd.read_csv(path, blocksize=0)


def test_parse_bytes():
    from distml.dataframe.io import parse_bytes

    assert parse_bytes("64MB") == 64_000_000
    assert parse_bytes("1 KiB") == 1024
    assert parse_bytes("2.5kB") == 2500
    assert parse_bytes(123) == 123


# ------------------------------------------------------------------------- partitions
def test_from_pandas_and_repartition(backend):
    pdf = frame(23)
    df = dd.from_pandas(pdf, npartitions=4)
    assert df.npartitions == 4 and df.partition_lengths() == (5, 6, 6, 6)
    pd.testing.assert_frame_equal(df.compute(), pdf)
    for n in (1, 3, 7, 30):
        re = df.repartition(npartitions=n)
        assert re.npartitions == n
        assert sum(re.partition_lengths()) == 23
        assert max(re.partition_lengths()) - min(re.partition_lengths()) <= 1
        pd.testing.assert_frame_equal(re.compute(), pdf)


def test_repartition_unknown_lengths(backend):
    pdf = frame(40)
    df = dd.from_pandas(pdf, npartitions=5)
    filtered = df[df["a"] > 0]
    expected = pdf[pdf["a"] > 0]
    for n in (2, 5, 12):
        re = filtered.repartition(n)
        assert re.npartitions == n
        pd.testing.assert_frame_equal(re.compute(), expected)
        assert sum(re.partition_lengths()) == len(expected)


def test_bad_npartitions():
    pdf = frame(5)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="npartitions must be a positive integer"):
            dd.from_pandas(pdf, npartitions=bad)
    with pytest.raises(ValueError, match="npartitions must be a positive integer"):
        dd.from_pandas(pdf, npartitions=2).repartition(0)
    with pytest.raises(TypeError, match="pandas DataFrame or Series"):
        dd.from_pandas([1, 2], npartitions=1)


def test_map_partitions(backend):
    pdf = frame(30)
    df = dd.from_pandas(pdf, npartitions=3)
    got = df.map_partitions(lambda p, k, scale=1: p[["a", "b"]] * k * scale, 2, scale=3)
    assert list(got.columns) == ["a", "b"]
    pd.testing.assert_frame_equal(got.compute(), pdf[["a", "b"]] * 6)
    lengths = df.map_partitions(lambda p: pd.Series([len(p)]), meta=("n", "int64"))
    assert lengths.compute().tolist() == [10, 10, 10]
    pair = df["a"].map_partitions(lambda x, y: x - y, df["b"])
    pd.testing.assert_series_equal(pair.compute(), pdf["a"] - pdf["b"])


def test_map_partitions_needs_meta_when_inference_fails():
    df = dd.from_pandas(frame(6), npartitions=2)
    with pytest.raises(ValueError, match="pass meta="):
        df.map_partitions(lambda p: p.iloc[0])
    got = df.map_partitions(lambda p: p.iloc[:1], meta=df.meta)
    assert len(got.compute()) == 2


# ------------------------------------------------------------------------- columns, rows
def test_selection_and_metadata(backend):
    pdf = frame(20)
    df = dd.from_pandas(pdf, npartitions=3)
    assert list(df.columns) == list(pdf.columns)
    assert df.dtypes.to_dict() == pdf.dtypes.to_dict()
    pd.testing.assert_series_equal(df["b"].compute(), pdf["b"])
    pd.testing.assert_frame_equal(df[["s", "a"]].compute(), pdf[["s", "a"]])
    pd.testing.assert_series_equal(df.a.compute(), pdf.a)
    assert df["a"].name == "a" and df["a"].dtype == np.int64
    assert len(df) == 20 and len(df["a"]) == 20


def test_unknown_column_errors():
    df = dd.from_pandas(frame(5), npartitions=2)
    with pytest.raises(KeyError, match="nope"):
        df["nope"]
    with pytest.raises(KeyError, match="zz"):
        df[["a", "zz"]]
    with pytest.raises(KeyError, match="zz"):
        df.dropna(subset=["zz"])
    with pytest.raises(AttributeError, match="nope"):
        df.nope
    with pytest.raises(TypeError, match="boolean"):
        df[df["a"] + 1]


def test_arithmetic_and_comparisons(backend):
    pdf = frame(40)
    df = dd.from_pandas(pdf, npartitions=4)
    cases = [
        (df["a"] + df["b"] * 2, pdf["a"] + pdf["b"] * 2),
        (1 - df["a"] / 4, 1 - pdf["a"] / 4),
        (df["a"] // 3 % 2 ** df["a"].abs(), pdf["a"] // 3 % 2 ** pdf["a"].abs()),
        (-df["b"], -pdf["b"]),
        (df["a"] > 0, pdf["a"] > 0),
        ((df["a"] >= 2) & ~(df["b"] < 0) | (df["s"] == "s3"),
         (pdf["a"] >= 2) & ~(pdf["b"] < 0) | (pdf["s"] == "s3")),
        (df["a"] != df["a"].max(), pdf["a"] != pdf["a"].max()),
    ]
    for got, expected in cases:
        assert got.dtype == expected.dtype
        pd.testing.assert_series_equal(got.compute(), expected, check_names=False)
    pd.testing.assert_frame_equal((df[["a", "b"]] * 2 + 1).compute(), pdf[["a", "b"]] * 2 + 1)


def test_filter_assign_dropna(backend):
    pdf = frame(60)
    df = dd.from_pandas(pdf, npartitions=4)
    same(df[df["a"] > 0].compute(), pdf[pdf["a"] > 0])
    same(df[df["b"] > df["b"].mean()].compute(), pdf[pdf["b"] > pdf["b"].mean()])
    same(df["b"][df["a"] > 3].compute(), pdf["b"][pdf["a"] > 3])
    assigned = df.assign(d=df["a"] * df["b"], e=1, f=lambda d: d["a"] + 1)
    pd.testing.assert_frame_equal(assigned.compute(),
                                  pdf.assign(d=pdf["a"] * pdf["b"], e=1, f=pdf["a"] + 1))
    df["g"] = df["b"] - 1
    df["a"] = df["a"] * 10
    expected = pdf.assign(g=pdf["b"] - 1, a=pdf["a"] * 10)
    pd.testing.assert_frame_equal(df.compute(), expected)
    assert df.partition_lengths() == (15, 15, 15, 15)
    same(df.dropna().compute(), expected.dropna())
    same(df["c"].dropna().compute(), expected["c"].dropna())
    assert len(df.dropna(subset=["c"])) == len(expected.dropna(subset=["c"]))
    assert len(df.dropna(how="all")) == 60


def test_assign_rejects_pandas_values():
    df = dd.from_pandas(frame(6), npartitions=2)
    with pytest.raises(TypeError, match="distml Series"):
        df.assign(x=pd.Series([1, 2, 3]))
    with pytest.raises(ValueError, match="different numbers of partitions"):
        df.assign(x=dd.from_pandas(frame(6), npartitions=3)["a"])


def test_head_and_len(backend):
    pdf = frame(30)
    df = dd.from_pandas(pdf, npartitions=6)
    pd.testing.assert_frame_equal(df.head(3), pdf.head(3))
    pd.testing.assert_frame_equal(df.head(17), pdf.head(17))
    pd.testing.assert_frame_equal(df.head(100), pdf)
    filtered = df[df["a"] > 2]
    same(filtered.head(12), pdf[pdf["a"] > 2].head(12))
    assert len(filtered) == int((pdf["a"] > 2).sum())
    pd.testing.assert_series_equal(df["b"].head(4), pdf["b"].head(4))


# ------------------------------------------------------------------------- reductions
def test_reductions(backend):
    pdf = frame(45)
    df = dd.from_pandas(pdf, npartitions=4)
    num = pdf[["a", "b", "c"]]
    dnum = df[["a", "b", "c"]]
    for op in ("sum", "mean", "min", "max", "count"):
        got = getattr(dnum, op)().compute()
        pd.testing.assert_series_equal(got, getattr(num, op)(), rtol=1e-12)
        for col in ("a", "b", "c"):
            value = getattr(df[col], op)().compute()
            assert value == pytest.approx(getattr(pdf[col], op)(), rel=1e-12)
    pd.testing.assert_series_equal(df.count().compute(), pdf.count())
    pd.testing.assert_series_equal(df.mean(numeric_only=True).compute(),
                                   pdf.mean(numeric_only=True), rtol=1e-12)
    with pytest.raises(TypeError, match="numeric_only"):
        df.mean()


def test_reductions_with_empty_partitions(backend):
    pdf = frame(20)
    df = dd.from_pandas(pdf, npartitions=4)
    empty_middle = df[df["a"] < 100].repartition(6)
    filtered = df[df["a"] > 7]
    assert filtered["a"].min().compute() == pdf["a"][pdf["a"] > 7].min()
    assert empty_middle["a"].max().compute() == pdf["a"].max()
    none = df[df["a"] > 1000]
    assert none["a"].count().compute() == 0
    assert len(none) == 0 and list(none.compute().columns) == list(pdf.columns)


def test_describe_matches_pandas(backend):
    pdf = frame(80)
    df = dd.from_pandas(pdf, npartitions=5)
    got = df.describe().compute()
    expected = pdf.describe()
    pd.testing.assert_frame_equal(got, expected, rtol=1e-10)
    pd.testing.assert_series_equal(df["b"].describe().compute(), pdf["b"].describe(),
                                   rtol=1e-10)


def test_describe_approximate_quartiles_on_large_partitions():
    rng = np.random.default_rng(1)
    pdf = pd.DataFrame({"x": rng.normal(size=12000), "y": rng.integers(0, 1000, 12000)})
    got = dd.from_pandas(pdf, npartitions=3).describe().compute()
    expected = pdf.describe()
    exact = ["count", "mean", "std", "min", "max"]
    pd.testing.assert_frame_equal(got.loc[exact], expected.loc[exact], rtol=1e-10)
    spread = expected.loc["std"]
    assert ((got.loc[["25%", "50%", "75%"]] - expected.loc[["25%", "50%", "75%"]]).abs()
            < 0.01 * spread).all().all()
    with pytest.raises(TypeError, match="numeric"):
        dd.from_pandas(pd.DataFrame({"s": ["a"]}), npartitions=1).describe()


# ------------------------------------------------------------------------- arrays, persist
def test_to_array(backend):
    pdf = frame(25)[["a", "b", "c"]]
    df = dd.from_pandas(pdf, npartitions=3)
    arr = df.to_array()
    assert isinstance(arr, Array)
    assert arr.shape == (25, 3) and arr.chunks == ((8, 8, 9), (3,))
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr.compute(), pdf.to_numpy())
    filtered = df[df["a"] > 0]
    values = filtered.values
    expected = pdf[pdf["a"] > 0].to_numpy()
    assert values.shape == expected.shape and sum(values.chunks[0]) == len(expected)
    np.testing.assert_array_equal(values.compute(), expected)
    col = df["a"].to_array()
    assert col.chunks == ((8, 8, 9),) and col.dtype == np.int64
    np.testing.assert_array_equal(col.compute(), pdf["a"].to_numpy())


def test_persist(backend):
    pdf = frame(30)
    df = dd.from_pandas(pdf, npartitions=3)
    held = (df[df["a"] > 0]).persist()
    assert held.npartitions == 3
    expected = pdf[pdf["a"] > 0]
    same(held.compute(), expected)
    same((held["b"] * 2).compute(), expected["b"] * 2)
    assert len(held) == len(expected)
    if backend is not None:
        same(backend.compute(held, sync=True), expected)


def test_a_row_that_does_not_parse_names_file_and_line(tmp_path, backend):
    early = tmp_path / "early.csv"
    early.write_text("a,b\n1,2\n3,4\n5,6,7,8\n9,10\n")
    with pytest.raises(ValueError, match=r"early\.csv: line 4"):
        dd.read_csv(str(early))  # found while sampling, before anything runs
    late = tmp_path / "late.csv"
    late.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(20000)) + "1,2,3\n")
    with pytest.raises(ValueError, match=r"late\.csv: line 20002"):
        dd.read_csv(str(late), blocksize="20KB").compute()


# ------------------------------------------------------------------------- global index
def test_divisions_from_sorted_index(backend):
    pdf = frame(23).set_index(np.arange(23) * 3)
    df = dd.from_pandas(pdf, npartitions=4)
    assert df.known_divisions and df.divisions == (0, 15, 33, 51, 66)
    assert dd.from_pandas(pdf.iloc[::-1], npartitions=4).divisions == (None,) * 5
    assert dd.from_pandas(pdf.iloc[:3], npartitions=5).divisions == (None,) * 6  # empty parts
    dup = pd.DataFrame({"x": range(8)}, index=[1, 1, 1, 1, 2, 2, 3, 3])
    d = dd.from_pandas(dup, npartitions=3)  # equal labels never straddle a boundary
    assert d.divisions == (1, 2, 3, 3) and d.partition_lengths() == (4, 2, 2)
    pd.testing.assert_frame_equal(d.compute(), dup)
    kept = (df[df["a"] > 0] * 1)[["a", "b"]]  # row filters and column math keep divisions
    assert kept.divisions == df.divisions
    assert df.map_partitions(lambda p: p.reset_index()).divisions == (None,) * 5
    assert df.repartition(2).divisions == (None,) * 3
    other = dd.from_pandas(pdf.set_index(np.arange(23) * 3 + 1), npartitions=4)
    with pytest.raises(ValueError, match="different divisions"):
        df["a"] + other["a"]


def test_loc_on_divisions(backend):
    pdf = frame(40).set_index(np.arange(40) * 2)
    df = dd.from_pandas(pdf, npartitions=5)  # divisions 0, 16, 32, 48, 64, 78
    one = df.loc[20]
    assert one.npartitions == 1
    pd.testing.assert_frame_equal(one.compute(), pdf.loc[[20]])
    assert df.loc[16].npartitions == 2  # a label on a boundary: both neighbours are read
    pd.testing.assert_frame_equal(df.loc[16].compute(), pdf.loc[[16]])
    assert len(df.loc[21].compute()) == 0  # inside the divisions but absent: no row
    part = df.loc[20:50]
    assert part.npartitions == 3 and part.divisions == (20, 32, 48, 50)
    pd.testing.assert_frame_equal(part.compute(), pdf.loc[20:50])
    pd.testing.assert_frame_equal(df.loc[:10].compute(), pdf.loc[:10])
    pd.testing.assert_frame_equal(df.loc[70:].compute(), pdf.loc[70:])
    pd.testing.assert_frame_equal(df.loc[100:200].compute(), pdf.loc[100:200])
    pd.testing.assert_frame_equal(df.loc[[2, 40, 78]].compute(), pdf.loc[[2, 40, 78]])
    pd.testing.assert_frame_equal(df.loc[10:30, ["a", "s"]].compute(),
                                  pdf.loc[10:30, ["a", "s"]])
    pd.testing.assert_series_equal(df.loc[10:30, "b"].compute(), pdf.loc[10:30, "b"])
    pd.testing.assert_series_equal(df["b"].loc[10:30].compute(), pdf["b"].loc[10:30])
    pd.testing.assert_frame_equal(df.loc[df["a"] > 3].compute(), pdf.loc[pdf["a"] > 3])
    pd.testing.assert_frame_equal(df.loc[4:20, :].compute(), pdf.loc[4:20, :])


def test_loc_without_divisions_reads_every_partition(backend):
    pdf = frame(30).set_index(np.random.default_rng(1).permutation(30))
    df = dd.from_pandas(pdf, npartitions=3)
    assert not df.known_divisions
    assert df.loc[7].npartitions == 3
    pd.testing.assert_frame_equal(df.loc[7].compute(), pdf.loc[[7]])
    same_rows = df.loc[5:12].compute()
    pd.testing.assert_frame_equal(same_rows, pdf[(pdf.index >= 5) & (pdf.index <= 12)])
    pd.testing.assert_frame_equal(df.loc[[3, 9]].compute(),
                                  pdf[pdf.index.isin([3, 9])])


def test_loc_errors():
    pdf = frame(20).set_index(np.arange(20))
    df = dd.from_pandas(pdf, npartitions=2)
    with pytest.raises(KeyError, match="outside the divisions 0 .. 19"):
        df.loc[20]
    with pytest.raises(KeyError, match=r"labels \[-1, 30\]"):
        df.loc[[-1, 3, 30]]
    with pytest.raises(TypeError, match="cannot be compared"):
        df.loc["x"]
    with pytest.raises(ValueError, match="step"):
        df.loc[0:10:2]
    with pytest.raises(KeyError, match="unknown column"):
        df.loc[0:3, ["nope"]]
    with pytest.raises(IndexError, match="only rows"):
        df["a"].loc[0, "a"]
    with pytest.raises(TypeError, match="column slices"):
        df.loc[0:3, "a":"b"]
    with pytest.raises(TypeError, match="cannot select rows with a dict"):
        df.loc[{"a": 1}]


def test_set_index_sorted(backend):
    pdf = frame(30)
    pdf["t"] = np.arange(30) // 2 * 5  # sorted, with duplicates
    df = dd.from_pandas(pdf, npartitions=4)
    got = df.set_index("t", sorted=True)
    assert got.divisions == (0, 15, 35, 55, 70)
    pd.testing.assert_frame_equal(got.compute(), pdf.set_index("t"))
    pd.testing.assert_frame_equal(got.loc[20:40].compute(), pdf.set_index("t").loc[20:40])
    kept = df.set_index("t", sorted=True, drop=False)
    pd.testing.assert_frame_equal(kept.compute(), pdf.set_index("t", drop=False))
    sparse = df[df["t"] > 40].set_index("t", sorted=True)  # empty partitions are dropped
    assert sparse.npartitions == 2 and sparse.partition_lengths() == (4, 8)
    pd.testing.assert_frame_equal(sparse.compute(), pdf[pdf["t"] > 40].set_index("t"))


def test_set_index_errors():
    pdf = frame(30)
    pdf["t"] = np.arange(30.0)
    df = dd.from_pandas(pdf, npartitions=3)
    with pytest.raises(ValueError, match="not sorted within partition 0"):
        df.set_index("b", sorted=True)
    rev = dd.from_pandas(pdf.assign(t=np.concatenate([np.arange(10, 30), np.arange(10)])), 3)
    with pytest.raises(ValueError, match=r"partition 2 starts at 0.*before partition 1 ends"):
        rev.set_index("t", sorted=True)
    with pytest.raises(ValueError, match="column 'c' has missing values"):
        df.set_index("c", sorted=True)
    with pytest.raises(ValueError, match="column 'c' has missing values"):
        df.set_index("c")
    with pytest.raises(KeyError, match="unknown column"):
        df.set_index("nope")
    from distml.dataframe.indexing import set_index
    with pytest.raises(TypeError, match="needs a DataFrame"):
        set_index(df["a"], "a")


@pytest.mark.parametrize("npartitions", [None, 1, 4])
def test_set_index_sorts_across_partitions(backend, npartitions):
    rng = np.random.default_rng(5)
    pdf = pd.DataFrame({"k": rng.integers(0, 40, 300), "v": np.arange(300),
                        "s": [f"w{i % 13}" for i in range(300)]})
    df = dd.from_pandas(pdf, npartitions=6)
    got = df.set_index("k", npartitions=npartitions)
    expected = pdf.set_index("k").sort_index(kind="stable")
    assert got.known_divisions and got.npartitions <= (npartitions or 6)
    pd.testing.assert_frame_equal(got.compute(), expected)
    from distml.dataframe.scheduling import get
    d = got.divisions
    for i, p in enumerate(get(got.__distml_graph__(), got.__distml_keys__())):
        assert len(p) and p.index.min() == d[i] and p.index.max() <= d[i + 1]
    by_text = df.set_index("s")
    pd.testing.assert_frame_equal(by_text.compute(), pdf.set_index("s").sort_index(kind="stable"))
    pd.testing.assert_frame_equal(by_text.loc["w3"].compute(),
                                  pdf.set_index("s").sort_index(kind="stable").loc[["w3"]])


def test_reset_index(backend):
    pdf = frame(25).set_index(np.arange(25) * 7)
    df = dd.from_pandas(pdf, npartitions=3)
    got = df.reset_index()
    assert got.divisions == (0, 8, 16, 24)
    pd.testing.assert_frame_equal(got.compute(), pdf.reset_index())
    filtered = df[df["a"] > 0].reset_index(drop=True)  # lengths unknown: offsets by tasks
    assert filtered.divisions == (None,) * 4
    expected = pdf[pdf["a"] > 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(filtered.compute(), expected)
    assert len(filtered) == len(expected)
    assert filtered.divisions == positional(filtered.partition_lengths())
    pd.testing.assert_frame_equal(filtered.loc[3:6].compute(), expected.loc[3:6])
    pd.testing.assert_frame_equal(df["b"].reset_index().compute(), pdf["b"].reset_index())


def positional(lengths):
    starts = np.cumsum((0,) + lengths)
    return tuple(int(s) for s in starts[:-1]) + (int(starts[-1]) - 1,)


def test_read_csv_unique_range_index(backend, tmp_path):
    expected = write_csvs(tmp_path)
    df = dd.read_csv(str(tmp_path / "part*.csv"), blocksize=300)
    assert df.npartitions > 3
    got = df.compute()
    pd.testing.assert_index_equal(got.index, pd.RangeIndex(len(expected)), exact=False)
    pd.testing.assert_frame_equal(got, expected)
    assert df.divisions[0] is None
    held = df.persist()
    assert len(held) == len(expected)
    assert held.divisions == positional(held.partition_lengths())
    pd.testing.assert_frame_equal(held.loc[50:60].compute(), expected.loc[50:60])
    assert held.loc[50:60].npartitions < held.npartitions
    pd.testing.assert_frame_equal(df.head(3), expected.head(3))
    assert (df["a"] + 1).compute().index.is_unique


# ------------------------------------------------------------------------- properties
PROPERTY = settings(derandomize=True, max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def frames(draw, sorted_index: bool = False):
    """A pandas frame of 0..30 rows: int, float (with NaN), bool and text columns."""
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pdf = pd.DataFrame({
        "i": rng.integers(-5, 5, n).astype(draw(st.sampled_from(["int32", "int64"]))),
        "f": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)).astype(
            draw(st.sampled_from(["float32", "float64"]))),
        "b": rng.random(n) < 0.5,
        "s": [f"t{k}" for k in rng.integers(0, 6, n)],
    })
    if sorted_index:
        pdf.index = np.sort(rng.integers(0, 20, n))  # duplicates likely
    return pdf, draw(st.integers(1, 7))


@settings(PROPERTY, max_examples=12)
@given(case=frames(), target=st.integers(1, 9))
def test_partitioning_and_reductions_property(backend, case, target):
    pdf, n = case
    df = dd.from_pandas(pdf, npartitions=n)
    pd.testing.assert_frame_equal(df.compute(), pdf)
    pd.testing.assert_frame_equal(df.repartition(target).compute(), pdf)
    assert len(df) == len(pdf)
    num = pdf[["i", "f", "b"]]
    op = ("sum", "min", "max", "count")[len(pdf) % 4]
    pd.testing.assert_series_equal(getattr(df[["i", "f", "b"]], op)().compute(),
                                   getattr(num, op)(), rtol=1e-5, check_dtype=False)
    pd.testing.assert_series_equal(df["f"].dropna().compute(), pdf["f"].dropna())
    pd.testing.assert_frame_equal(df[df["i"] > 0].reset_index(drop=True).compute(),
                                  pdf[pdf["i"] > 0].reset_index(drop=True))
    pd.testing.assert_frame_equal(df.reset_index().compute(), pdf.reset_index())


@PROPERTY
@given(case=frames(sorted_index=True), data=st.data())
def test_loc_matches_pandas_property(backend, case, data):
    pdf, n = case
    df = dd.from_pandas(pdf, npartitions=n)
    lo = data.draw(st.one_of(st.none(), st.integers(-2, 22)))
    hi = data.draw(st.one_of(st.none(), st.integers(-2, 22)))
    pd.testing.assert_frame_equal(df.loc[lo:hi].compute(), pdf.loc[lo:hi])
    label = data.draw(st.integers(-2, 22))
    if label in pdf.index:
        pd.testing.assert_frame_equal(df.loc[label].compute(), pdf.loc[[label]])
    elif df.known_divisions and not df.divisions[0] <= label <= df.divisions[-1]:
        with pytest.raises(KeyError):
            df.loc[label]
    else:
        assert len(df.loc[label].compute()) == 0


@settings(PROPERTY, max_examples=15)
@given(case=frames(), column=st.sampled_from(["i", "s", "b"]), parts=st.integers(1, 5))
def test_set_index_matches_pandas_property(backend, case, column, parts):
    pdf, n = case
    df = dd.from_pandas(pdf, npartitions=n)
    got = df.set_index(column, npartitions=parts)
    expected = pdf.set_index(column).sort_index(kind="stable")
    pd.testing.assert_frame_equal(got.compute(), expected, check_index_type=False)
    if len(pdf):
        assert got.known_divisions
        assert got.divisions[0] == expected.index[0] and got.divisions[-1] == expected.index[-1]
    ordered = dd.from_pandas(pdf.sort_values(column, kind="stable"), npartitions=n)
    pd.testing.assert_frame_equal(ordered.set_index(column, sorted=True).compute(),
                                  expected, check_index_type=False)


def test_read_csv_row_numbers_wait_only_for_earlier_partitions(tmp_path):
    from distml.array.optimize import cull_graph

    write_csvs(tmp_path)
    df = dd.read_csv(str(tmp_path / "part*.csv"), blocksize=64)
    n = df.npartitions
    assert n > 40
    graph = df.__distml_graph__()
    for i in (0, 1, n // 2, n - 1):
        needed = cull_graph(graph, [(df._name, i)])
        parsed = {k[1] for k in needed if k[0].startswith("read-csv-parse")}
        assert parsed == set(range(i + 1))
    expected = write_csvs(tmp_path)
    pd.testing.assert_frame_equal(df.head(7), expected.head(7))


def test_read_csv_index_col_keeps_the_column_index(backend, tmp_path):
    expected = write_csvs(tmp_path)
    df = dd.read_csv(str(tmp_path / "part*.csv"), blocksize=500, index_col="s")
    pd.testing.assert_frame_equal(df.compute(), expected.set_index("s"))
