"""Planning reads of Parquet (and table) data: small files and row groups read together,
a huge row group read once and cut, row counts taken from the footers."""

import os

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask.callbacks import Callback

from distgmm.io.sources import ParquetSource
from distgmm.io.sources.parquet_files import RowGroups
from distgmm.io.sources.tables import Fragment, plan_reads


class _Counting(Callback):
    def __init__(self):
        super().__init__()
        self.tasks = 0

    def _posttask(self, key, result, dsk, state, id):
        self.tasks += 1


def _table(rows: np.ndarray, start: int = 0) -> pa.Table:
    return pa.table({"x": rows[:, 0], "y": rows[:, 1],
                     "id": np.arange(start, start + len(rows))})


def _computed_reads(X, want, monkeypatch) -> list:
    """The row groups of each file read while ``X`` is computed (checked to be ``want``)."""
    reads = []
    original = RowGroups.read
    monkeypatch.setattr(RowGroups, "read",
                        lambda self, *a: reads.append(self.row_groups) or original(self, *a))
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(X.compute(), want)
    return reads


def test_plan_groups_small_fragments_and_cuts_big_ones():
    frags = ([Fragment(i, 100) for i in range(10)] + [Fragment(10, 1000), Fragment(11, None)]
             + [Fragment(i, 100) for i in range(12, 15)])
    plan = plan_reads(frags, row_bytes=8, chunk_bytes=300 * 8)  # 300 rows a partition
    assert [[f.task for f in g] for g, _ in plan] == [
        [0, 1, 2], [3, 4, 5], [6, 7, 8], [9], [10], [11], [12, 13, 14]]
    # 1000 rows are ~3 partitions' worth: read once, cut in 3; unknown size: one partition
    assert [n for _, n in plan] == [1, 1, 1, 1, 3, 1, 1]


def test_many_small_files_make_few_partitions_in_natural_order(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1000, 2))
    for i in range(40):  # part-2 must come before part-10, as dask and Spark order them
        pq.write_table(_table(data[25 * i:25 * (i + 1)], 25 * i), tmp_path / f"part-{i}.parquet")
    counter = _Counting()
    with counter, dask.config.set(scheduler="synchronous"):  # a pass would be counted
        ds = ParquetSource(str(tmp_path), columns=("x", "y"), id_column="id",
                           chunk_bytes=100 * 16).load()
    assert counter.tasks == 0  # row counts came from the footers: no pass over the data
    assert ds.X.chunks[0] == (100,) * 10  # 40 files, 4 to a task
    assert ds.frame.npartitions == 10
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute(), data)
        np.testing.assert_array_equal(ds.frame["id"].compute().to_numpy(), np.arange(1000))


def test_a_huge_row_group_is_read_once_and_cut(tmp_path, monkeypatch):
    data = np.random.default_rng(1).normal(size=(1000, 2))
    pq.write_table(_table(data), tmp_path / "one.parquet", row_group_size=1000)
    ds = ParquetSource(str(tmp_path / "one.parquet"), columns=("x", "y"),
                       chunk_bytes=250 * 16).load()
    assert ds.X.chunks[0] == (250,) * 4
    reads = _computed_reads(ds.X, data, monkeypatch)
    assert reads == [(0,)]  # four partitions, one read


def test_consecutive_row_groups_of_a_file_are_one_read(tmp_path, monkeypatch):
    data = np.random.default_rng(2).normal(size=(1000, 2))
    pq.write_table(_table(data), tmp_path / "many.parquet", row_group_size=50)
    ds = ParquetSource(str(tmp_path / "many.parquet"), columns=("x", "y"),
                       chunk_bytes=500 * 16).load()
    assert ds.X.chunks[0] == (500, 500)
    reads = _computed_reads(ds.X, data, monkeypatch)
    assert sorted(reads) == [tuple(range(10)), tuple(range(10, 20))]


def test_row_filters_prune_row_groups_and_count_rows_by_reading(tmp_path):
    data = np.column_stack([np.arange(1000.0), np.random.default_rng(3).normal(size=1000)])
    pq.write_table(_table(data), tmp_path / "sorted.parquet", row_group_size=100)
    counter = _Counting()
    with counter, dask.config.set(scheduler="synchronous"):
        ds = ParquetSource(str(tmp_path / "sorted.parquet"), columns=("x", "y"),
                           filters=("x >= 250", "x < 480")).load()
    assert counter.tasks > 0  # rows left after a row filter are only known by reading
    assert ds.description["row_groups"] == 3  # 200-299, 300-399, 400-499 by min/max
    want = pq.read_table(tmp_path / "sorted.parquet", columns=["x", "y"],
                         filters=[("x", ">=", 250), ("x", "<", 480)])
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute(), np.column_stack(
            [want["x"].to_numpy(), want["y"].to_numpy()]))


def test_side_files_and_unnamed_index_columns_are_not_data(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0]}, index=[10, 20, 30])
    df.to_parquet(tmp_path / "part-0.parquet")  # the index kept as __index_level_0__
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.parquet.crc").write_bytes(b"\0\1")
    (tmp_path / "README.txt").write_text("not data")
    (tmp_path / "_tmp").mkdir()
    pq.write_table(pa.table({"x": [9.0], "y": [9.0]}), tmp_path / "_tmp" / "part-9.parquet")
    ds = ParquetSource(str(tmp_path)).load()
    assert ds.feature_names == ("x", "y")
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute(), df.to_numpy())


def test_a_corrupt_page_names_the_file_and_row_groups(tmp_path):
    data = np.random.default_rng(4).normal(size=(400, 2))
    path = tmp_path / "bad.parquet"
    pq.write_table(_table(data), path, row_group_size=200, compression="zstd")
    page = pq.read_metadata(path).row_group(1).column(0)
    with open(path, "r+b") as fh:
        fh.seek(page.data_page_offset)
        fh.write(b"\xff" * 64)
    ds = ParquetSource(str(path), columns=("x", "y"), chunk_bytes=200 * 16).load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.blocks[0].compute(), data[:200])
        with pytest.raises(ValueError, match=r"bad.parquet: cannot read row groups 1 .*"
                                             r"corrupt or incomplete; remove or rewrite it"):
            ds.X.blocks[1].compute()


@pytest.mark.parametrize("small_file", [0, 4 << 20], ids=["file-reader", "read-whole"])
def test_a_big_footer_is_parsed_once_per_worker_and_not_after_a_rewrite(tmp_path, monkeypatch,
                                                                        small_file):
    from distgmm.io.sources import parquet_files

    monkeypatch.setattr(parquet_files, "BIG_FOOTER", 0)
    monkeypatch.setattr(parquet_files, "SMALL_FILE", small_file)
    monkeypatch.setattr(parquet_files, "_FOOTERS", parquet_files.OrderedDict())
    path = tmp_path / "f.parquet"
    data = np.random.default_rng(5).normal(size=(400, 2))
    pq.write_table(_table(data), path, row_group_size=50)
    ds = ParquetSource(str(path), columns=("x", "y"), chunk_bytes=100 * 16).load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute(), data)
    assert len(parquet_files._FOOTERS) == 1  # four tasks, one footer kept
    newer = data[::-1].copy()
    pq.write_table(_table(newer), path, row_group_size=50)  # same size, same name
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's tick
    ds = ParquetSource(str(path), columns=("x", "y"), chunk_bytes=100 * 16).load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute(), newer)
    assert len(parquet_files._FOOTERS) == 2


def test_files_that_disagree_on_a_column_type_are_promoted(tmp_path):
    # pandas writes a column as int64 on a day without NaN, float64 on a day with one
    pq.write_table(pa.table({"x": pa.array([1, 2], pa.int64())}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"x": [2.5, 3.5]}), tmp_path / "part-1.parquet")
    ds = ParquetSource(str(tmp_path)).load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute().ravel(), [1.0, 2.0, 2.5, 3.5])
    pq.write_table(pa.table({"x": ["a"]}), tmp_path / "part-2.parquet")
    with pytest.raises(ValueError, match="disagree on column types .*one type per column"):
        ParquetSource(str(tmp_path)).load()


def test_a_dotted_column_is_not_read_from_a_struct_of_that_path(tmp_path):
    # arrow's reader takes "a.b" as the field b of a struct column a: a file with such a
    # struct and no column named "a.b" has no values for it
    pq.write_table(pa.table({"x": [1.0, 2.0], "a.b": [5.0, 6.0]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"x": [3.0], "a": pa.array([{"b": 7.0}])}),
                   tmp_path / "part-1.parquet")
    ds = ParquetSource(str(tmp_path), columns=("x",), passthrough=("a.b",)).load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute().ravel(), [1.0, 2.0, 3.0])
        got = ds.frame["a.b"].compute()
    assert got.iloc[:2].tolist() == [5.0, 6.0] and got.isna().tolist() == [False, False, True]
    # a file with both: arrow returns the column "a.b" and the struct a, and a column
    # the file lacks is still filled with nulls
    other = tmp_path / "both"
    other.mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0], "a.b": [5.0, 6.0],
                             "a": pa.array([{"b": 0.0}, {"b": 0.0}])}), other / "part-0.parquet")
    pq.write_table(pa.table({"x": [3.0], "a.b": [7.0], "y": [1.0]}), other / "part-1.parquet")
    ds = ParquetSource(str(other), columns=("x", "a.b"), passthrough=("y",)).load()
    with dask.config.set(scheduler="synchronous"):
        frame = ds.frame.compute()
    assert frame["a.b"].tolist() == [5.0, 6.0, 7.0]
    assert frame["y"].isna().tolist() == [True, True, False] and frame["y"].iloc[2] == 1.0


def test_a_partition_filter_also_filters_files_outside_the_partitions(tmp_path):
    (tmp_path / "day=a").mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "day=a" / "p.parquet")
    pq.write_table(pa.table({"x": [3.0, 4.0]}), tmp_path / "root.parquet")
    ds = ParquetSource(str(tmp_path), columns=("x",), filters=("day == 'a'",)).load()
    want = pq.read_table(tmp_path, filters=[("day", "==", "a")])["x"].to_numpy()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute().ravel(), want)


def test_a_glob_reads_the_files_it_matches_with_their_partitions(tmp_path):
    for day in ("a", "b"):
        (tmp_path / f"day={day}").mkdir()
        pq.write_table(pa.table({"x": [1.0, 2.0] if day == "a" else [3.0]}),
                       tmp_path / f"day={day}" / "p.parquet")
    ds = ParquetSource(str(tmp_path / "day=*" / "*.parquet"), columns=("x",),
                       id_column="day").load()
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.X.compute().ravel(), [1.0, 2.0, 3.0])
        assert list(ds.frame["day"].compute()) == ["a", "a", "b"]


def test_a_rewritten_file_gets_new_keys_and_a_changed_one_is_an_error(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": np.arange(10.0)}), path)
    first = ParquetSource(str(path)).load().X
    assert ParquetSource(str(path)).load().X.name == first.name  # keys are deterministic
    pq.write_table(pa.table({"x": np.arange(9.0)}), path)  # fewer rows, after planning
    os.utime(path, ns=(2, 2))
    assert ParquetSource(str(path)).load().X.name != first.name
    with dask.config.set(scheduler="synchronous"), pytest.raises(
            ValueError, match=r"changed while it was read \(10 rows planned .* 9 read\)"):
        first.compute()


def test_a_corrupt_file_is_named_among_side_files(tmp_path):
    pq.write_table(pa.table({"x": [1.0]}), tmp_path / "part-0.parquet")
    (tmp_path / "part-1.parquet").write_bytes(b"PAR1" + b"\0" * 40 + b"PAR1")
    (tmp_path / "README.txt").write_text("not data")
    with pytest.raises(ValueError, match=r"part-1.parquet in .* is not a readable Parquet"):
        ParquetSource(str(tmp_path)).load()


def test_the_description_changes_with_the_files_contents(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": np.arange(10.0)}), path)
    before = ParquetSource(str(path)).load().description
    pq.write_table(pa.table({"x": np.arange(10.0) + 1}), path)  # same shape and chunks
    os.utime(path, ns=(3, 3))
    after = ParquetSource(str(path)).load().description
    assert before["shape"] == after["shape"] and before["chunks"] == after["chunks"]
    assert before["files_version"] != after["files_version"]  # so resume is refused


@pytest.mark.parametrize("small_file", [0, 4 << 20], ids=["file-reader", "read-whole"])
@pytest.mark.parametrize("where", ["local", "url", "memory"])
def test_open_parquet_reads_the_same_table_by_either_route(tmp_path, monkeypatch, where,
                                                           small_file):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from distgmm.io.sources import parquet_files

    monkeypatch.setattr(parquet_files, "SMALL_FILE", small_file)
    table = _table(np.random.default_rng(7).normal(size=(300, 2)))
    if where == "memory":
        url = f"memory://{tmp_path.name}/f.parquet"
        with fsspec.open(url, "wb") as fh:
            pq.write_table(table, fh, row_group_size=100)
        size = fsspec.filesystem("memory").size(url)
    else:
        pq.write_table(table, tmp_path / "f.parquet", row_group_size=100)
        url = str(tmp_path / "f.parquet") if where == "local" else (
            (tmp_path / "f.parquet").as_uri())
        size = os.path.getsize(tmp_path / "f.parquet")
    opened, local_sources = [], []
    original = MemoryFileSystem._open
    monkeypatch.setattr(MemoryFileSystem, "_open",
                        lambda self, *a, **k: opened.append(a) or original(self, *a, **k))
    open_local = parquet_files._open_local
    monkeypatch.setattr(parquet_files, "_open_local", lambda fh, key: local_sources.append(
        type(fh).__name__) or open_local(fh, key))
    with parquet_files.open_parquet(url, {}, size) as pf:
        assert pf.read_row_groups([1, 2], columns=["y"]).equals(table.select(["y"]).slice(100))
    if where == "memory":
        # a small remote file is one whole-object fetch, not a footer read and column reads
        assert len(opened) == (0 if small_file else 1) and not local_sources
    else:  # a small local file is parsed from memory, a bigger one through arrow's reader
        assert local_sources == (["BufferReader"] if small_file else ["NativeFile"])


def test_long_filter_values_that_differ_get_their_own_keys(tmp_path):
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": np.arange(5000), "x": np.arange(5000.0)}), path)
    a = np.arange(3000)
    b = a.copy()
    b[1500:2500] += 2000  # numpy prints both arrays alike (elided middle)
    A = ParquetSource(str(path), columns=("x",), filters=(("id", "in", a),)).load()
    B = ParquetSource(str(path), columns=("x",), filters=(("id", "in", b),)).load()
    assert A.X.name != B.X.name
    with dask.config.set(scheduler="synchronous"):
        assert float(A.X.sum().compute()) == a.sum()
        assert float(B.X.sum().compute()) == b[b < 5000].sum()


def test_task_tokens_follow_every_field_and_ignore_the_options_order():
    from dask.tokenize import tokenize

    def task(options, version="10:1", filters=()):
        return Fragment(RowGroups("file:///d/f.parquet", version, (0,), (("day", "a"),),
                                  options, filters), 10)

    same = tokenize(task({"anon": True, "key": "k"}))
    assert tokenize(task({"key": "k", "anon": True})) == same
    assert tokenize(task({"key": "k", "anon": False})) != same
    assert tokenize(task({"anon": True, "key": "k"}, version="11:1")) != same
    values = np.arange(2000)
    other = values.copy()
    other[1000] = -1  # numpy prints both alike
    assert tokenize(task({}, filters=(("id", "in", values),))) != tokenize(
        task({}, filters=(("id", "in", other),)))
