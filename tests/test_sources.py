"""Every source passes one shared conformance class; format-specific cases follow."""

import json
import pickle

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from conftest import blobs, sklearn_start

from distgmm import GaussianMixture
from distgmm.io.sources import (
    ArraySource,
    NpySource,
    ParquetSource,
    ZarrSource,
    chunk_rows,
    open_source,
    parse_filter,
)


def _frame(X):
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])


class SourceTests:
    """The contract: a float dask array, rows chunked, features whole, same values."""

    threads_only = False  # memory:// stores live in this process only

    def make(self, tmp_path, X: np.ndarray, chunk_bytes: int):
        raise NotImplementedError

    @pytest.fixture
    def data(self):
        return blobs(n=1200, d=3, k=3, seed=1)[0]

    def _compute(self, x):
        if self.threads_only:
            with dask.config.set(scheduler="threads"):
                return x.compute()
        return x.compute()

    def test_values_shape_and_known_chunks(self, tmp_path, data):
        ds = self.make(tmp_path, data, chunk_bytes=10**9).load()
        assert ds.X.shape == data.shape and ds.X.dtype == np.float64
        assert ds.X.numblocks[1] == 1
        assert sum(ds.X.chunks[0]) == len(data)
        np.testing.assert_array_equal(self._compute(ds.X), data)

    def test_chunks_follow_the_byte_budget(self, tmp_path, data):
        budget = 200 * 3 * 8
        ds = self.make(tmp_path, data, chunk_bytes=budget).load()
        assert len(ds.X.chunks[0]) >= 4
        np.testing.assert_array_equal(self._compute(ds.X), data)

    def test_description_is_json(self, tmp_path, data):
        ds = self.make(tmp_path, data, chunk_bytes=10**9).load()
        desc = json.loads(json.dumps(ds.description))
        assert desc["kind"] and desc["shape"] == list(data.shape)

    def test_source_pickles(self, tmp_path, data):
        src = self.make(tmp_path, data, chunk_bytes=10**9)
        assert pickle.loads(pickle.dumps(src)).load().X.shape == data.shape

    @pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
    @pytest.mark.parametrize("ct", ["full", "diag"])
    def test_fit_equals_in_memory(self, tmp_path, data, ct, request):
        ds = self.make(tmp_path, data, chunk_bytes=250 * 3 * 8).load()
        start = sklearn_start(data, 3, ct)
        ref = GaussianMixture(3, covariance_type=ct, tol=0, max_iter=5, **start).fit(data)
        gm = GaussianMixture(3, covariance_type=ct, tol=0, max_iter=5, **start)
        if self.threads_only:
            with dask.config.set(scheduler="threads"):
                gm.fit(ds.X)
        else:
            request.getfixturevalue("client")
            gm.fit(ds.X)
        np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-10, atol=1e-12)
        assert gm.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)


class TestArray(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        return ArraySource(X, chunk_bytes=chunk_bytes)


class TestNpy(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        np.save(tmp_path / "x.npy", X.astype(np.float64))
        return open_source(str(tmp_path / "x.npy"), chunk_bytes=chunk_bytes)


def _write_zarr(store, X, zarr_format=3, name=None, chunks=(100, 3)):
    if name is None:
        z = zarr.create_array(store=store, shape=X.shape, chunks=chunks, dtype=X.dtype,
                              zarr_format=zarr_format)
    else:
        g = zarr.open_group(store, mode="w", zarr_format=zarr_format)
        z = g.create_array(name, shape=X.shape, chunks=chunks, dtype=X.dtype)
    z[:] = X
    return z


class TestZarrV3(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        _write_zarr(str(tmp_path / "x.zarr"), X, 3)
        return open_source(str(tmp_path / "x.zarr"), chunk_bytes=chunk_bytes)


class TestZarrV2Group(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        _write_zarr(str(tmp_path / "g.zarr"), X, 2, name="raw/x")
        return open_source(str(tmp_path / "g.zarr"), array="raw/x", chunk_bytes=chunk_bytes)


class TestZarrZip(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        path = tmp_path / "x.zip"
        if not path.exists():
            store = zarr.storage.ZipStore(str(path), mode="w")
            _write_zarr(store, X, 3)
            store.close()
        return open_source(str(path), chunk_bytes=chunk_bytes)


class TestZarrMemoryURL(SourceTests):
    threads_only = True

    def make(self, tmp_path, X, chunk_bytes):
        url = f"memory://{tmp_path.name}/x.zarr"
        _write_zarr(url, X, 3, name="x")
        return ZarrSource(url, array="x", chunk_bytes=chunk_bytes)


class TestParquetFile(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        path = tmp_path / "x.parquet"
        pq.write_table(pa.Table.from_pandas(_frame(X)), path, row_group_size=100)
        return open_source(str(path), chunk_bytes=chunk_bytes)


class TestParquetDirectory(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        path = tmp_path / "parts"
        if not path.exists():
            path.mkdir()
            for i, rows in enumerate(np.array_split(np.arange(len(X)), 3)):
                pq.write_table(pa.Table.from_pandas(_frame(X[rows]), preserve_index=False),
                               path / f"part-{i:03d}.parquet", row_group_size=100)
        return open_source(str(path), chunk_bytes=chunk_bytes)


class TestParquetHive(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        df = _frame(X).assign(part=np.arange(len(X)) * 4 // len(X), row_id=np.arange(len(X)))
        path = tmp_path / "lake"
        if not path.exists():
            pq.write_to_dataset(pa.Table.from_pandas(df), path, partition_cols=["part"])
        return ParquetSource(str(path), columns=("f0", "f1", "f2"), id_column="row_id",
                             chunk_bytes=chunk_bytes)

    def test_hive_rows_come_in_partition_order(self, tmp_path, data):
        ds = self.make(tmp_path, data, 10**9).load()
        ids = ds.frame["row_id"].compute().to_numpy()
        np.testing.assert_array_equal(ids, np.arange(len(data)))


# ----------------------------------------------------------------- format-specific
def test_chunk_rows_whole_store_chunks():
    assert chunk_rows(4, 8, 128 * 2**20) == 128 * 2**20 // 32
    assert chunk_rows(4, 8, 10_000, store_rows=100) == 300
    assert chunk_rows(4, 8, 10, store_rows=100) == 100
    # small data is still split for the workers, but not below 4 MiB chunks
    assert chunk_rows(4, 8, 128 * 2**20, n_rows=10**7) == 10**7 // 8
    assert chunk_rows(4, 8, 128 * 2**20, n_rows=10**5) == 4 * 2**20 // 32


def test_parse_filter():
    assert parse_filter("date == '2026-11-01'") == ("date", "==", "2026-11-01")
    assert parse_filter("x>3") == ("x", ">", 3)
    assert parse_filter("k = abc") == ("k", "==", "abc")
    assert parse_filter("k in [1, 2]") == ("k", "in", [1, 2])
    assert parse_filter("k not in [1]") == ("k", "not in", [1])
    assert parse_filter(["a", "<", 1.5]) == ("a", "<", 1.5)
    with pytest.raises(ValueError, match="COLUMN OP VALUE"):
        parse_filter("date is today")
    with pytest.raises(ValueError, match="needs a list"):
        parse_filter("k in 3")


@pytest.fixture
def lake(tmp_path):
    """Hive-partitioned by date, with nulls, a string column and an id column."""
    rng = np.random.default_rng(0)
    frames = []
    for day in ("2026-11-01", "2026-11-02"):
        n = 50
        frames.append(pd.DataFrame({
            "id": [f"{day}-{i}" for i in range(n)],
            "a": pd.array(rng.integers(0, 100, n), dtype="Int64"),
            "b": rng.normal(size=n).astype(np.float32),
            "c": pd.array(rng.normal(size=n), dtype="float64[pyarrow]"),
            "name": rng.choice(["x", "y"], n),
            "date": day,
        }))
    df = pd.concat(frames, ignore_index=True)
    pq.write_to_dataset(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "lake",
                        partition_cols=["date"])
    return str(tmp_path / "lake"), df


def test_parquet_filters_columns_and_ids(lake):
    path, df = lake
    ds = ParquetSource(path, columns=("a", "b", "c"), filters=("date == '2026-11-02'",),
                       id_column="id", passthrough=("name",)).load()
    want = df[df.date == "2026-11-02"]
    assert ds.X.shape == (50, 3) and ds.feature_names == ("a", "b", "c")
    np.testing.assert_allclose(ds.X.compute(), want[["a", "b", "c"]].astype(float).to_numpy(),
                               rtol=1e-7)
    assert list(ds.frame["id"].compute()) == list(want["id"])
    assert ds.description["filters"] == [["date", "==", "2026-11-02"]]


def test_parquet_nullable_values_become_nan(lake, tmp_path):
    _, df = lake
    df = df.copy()
    df.loc[3, "a"] = pd.NA
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "n.parquet")
    X = ParquetSource(str(tmp_path / "n.parquet"), columns=("a", "b")).load().X.compute()
    assert np.isnan(X[3, 0]) and np.isfinite(np.delete(X, 3, axis=0)).all()


def test_parquet_rejects_string_features_by_name(lake):
    path, _ = lake
    with pytest.raises(ValueError, match=r"\['name'\]"):
        ParquetSource(path, columns=("a", "name")).load()
    with pytest.raises(ValueError, match=r"'id', 'name'|'name'"):
        ParquetSource(path, filters=("date == '2026-11-01'",)).load()


def test_parquet_missing_column_and_empty_filter(lake):
    path, _ = lake
    with pytest.raises(ValueError, match=r"Column\(s\) \['nope'\] not in"):
        ParquetSource(path, columns=("a", "nope")).load()
    with pytest.raises(ValueError, match="No rows .* after the filters"):
        ParquetSource(path, columns=("a",), filters=("date == '1999-01-01'",)).load()


def test_zarr_group_needs_an_array_name(tmp_path):
    X = np.ones((10, 2))
    _write_zarr(str(tmp_path / "g.zarr"), X, 3, name="a")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="a")
    g.create_array("b", shape=(10, 2), chunks=(5, 2), dtype="f8")
    with pytest.raises(ValueError, match=r"holding \['a', 'b'\]: name the array"):
        ZarrSource(str(tmp_path / "g.zarr")).load()
    with pytest.raises(ValueError, match=r"No array 'c'"):
        ZarrSource(str(tmp_path / "g.zarr"), array="c").load()


def test_zarr_bad_shapes_and_dtypes(tmp_path):
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=(10,), dtype="f8")
    z[:] = 1
    with pytest.raises(ValueError, match="1-D; distgmm needs a 2-D array"):
        ZarrSource(str(tmp_path / "v.zarr")).load()
    with pytest.raises(FileNotFoundError, match="No Zarr array or group"):
        ZarrSource(str(tmp_path / "missing.zarr")).load()


def test_open_source_detects_and_checks_options(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    assert isinstance(open_source(str(tmp_path / "x.npy")), NpySource)
    with pytest.raises(ValueError, match=r"\['id_column'\] do not apply to npy input"):
        open_source(str(tmp_path / "x.npy"), id_column="id")
    with pytest.raises(FileNotFoundError, match="check the input path"):
        open_source(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="pass --format"):
        open_source(str(tmp_path / "empty"))


def test_npy_graph_carries_the_path_not_the_data(tmp_path):
    X = np.random.default_rng(0).normal(size=(20000, 4))
    np.save(tmp_path / "x.npy", X)
    ds = NpySource(str(tmp_path / "x.npy"), chunk_rows=5000).load()
    assert len(pickle.dumps(dict(ds.X.__dask_graph__()))) < 20000


def test_parquet_many_partitions_with_a_column_subset(tmp_path):
    """dask-expr fuses partitions by projected columns; ids must still line up."""
    root = tmp_path / "wide"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        df = pd.DataFrame(rng.normal(size=(50, 15)), columns=[f"c{j}" for j in range(15)])
        df["id"] = np.arange(i * 50, (i + 1) * 50)
        df.to_parquet(root / f"part-{i:02d}.parquet", index=False)
    ds = ParquetSource(str(root), columns=("c0", "c1"), id_column="id").load()
    frame = ds.frame.compute()
    assert ds.X.numblocks[0] == ds.frame.npartitions
    np.testing.assert_array_equal(frame["id"].to_numpy(), np.arange(600))
    np.testing.assert_array_equal(ds.X.compute(), frame[["c0", "c1"]].to_numpy())


def test_parquet_written_with_a_pandas_index(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=pd.Index([7, 8, 9], name="id"))
    df.to_parquet(tmp_path / "i.parquet")
    ds = ParquetSource(str(tmp_path / "i.parquet"), columns=("a",), id_column="id").load()
    assert list(ds.frame["id"].compute()) == [7, 8, 9]


def test_parquet_filter_of_the_wrong_type(lake):
    path, _ = lake
    with pytest.raises(ValueError, match="filter values have the column's type"):
        ParquetSource(path, columns=("a",), filters=("date == 5",)).load()


def test_corrupt_inputs_are_bad_input(tmp_path):
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array"}')
    with pytest.raises(ValueError, match="unreadable Zarr metadata"):
        ZarrSource(str(tmp_path / "c.zarr")).load()
    (tmp_path / "z.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable Zarr metadata"):
        ZarrSource(str(tmp_path / "z.zip")).load()
    (tmp_path / "e.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="not a plain .npy array"):
        NpySource(str(tmp_path / "e.npy")).load()
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        ZarrSource(str(tmp_path / "c.zarr"), storage_options={"anon": True}).load()
