"""Table formats in (Delta Lake, Iceberg, Icechunk): every source passes the shared
conformance tests; snapshots, time travel, deletes and filters are checked against
each format's own reader."""

import re

import numpy as np
import pyarrow as pa
import pytest
import zarr
from conftest import blobs
from test_sources import SourceTests

from distgmm import GaussianMixture
from distgmm.io.sources import (
    DeltaSource,
    IcebergSource,
    IcechunkSource,
    detect_format,
    open_source,
)


def _table(X, start=0, date=None):
    cols = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    cols["row_id"] = np.arange(start, start + len(X))
    if date is not None:
        cols["date"] = [date] * len(X)
    return pa.table(cols)


# ---------------------------------------------------------------- conformance
class TestDelta(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        from deltalake import write_deltalake

        path = tmp_path / "delta"
        if not path.exists():  # six commits, one file each, in order
            for i, rows in enumerate(np.array_split(np.arange(len(X)), 6)):
                write_deltalake(str(path), _table(X[rows], rows[0]),
                                mode="append" if i else "error")
        return open_source(str(path), columns=("f0", "f1", "f2"), id_column="row_id",
                           chunk_bytes=chunk_bytes)

    def test_detected_and_ids_line_up(self, tmp_path, data):
        src = self.make(tmp_path, data, 10**9)
        assert isinstance(src, DeltaSource) and detect_format(src.path) == "delta"
        ds = src.load()
        np.testing.assert_array_equal(ds.frame["row_id"].compute().to_numpy(),
                                      np.arange(len(data)))
        assert ds.description["version"] == 5


def _catalog(tmp_path):
    from pyiceberg.catalog import load_catalog

    props = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db",
             "warehouse": f"file://{tmp_path}/warehouse"}
    cat = load_catalog("lake", **props)
    cat.create_namespace_if_not_exists("ns")
    return cat, props


class TestIceberg(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        cat, props = _catalog(tmp_path)
        if not cat.table_exists("ns.t"):
            t = cat.create_table("ns.t", schema=_table(X[:1]).schema)
            for rows in np.array_split(np.arange(len(X)), 6):
                t.append(_table(X[rows], rows[0]))
        return open_source("iceberg://lake/ns.t", columns=("f0", "f1", "f2"),
                           storage_options=props, chunk_bytes=chunk_bytes)

    def test_table_directory_without_a_catalog(self, tmp_path, data):
        self.make(tmp_path, data, 10**9)
        root = tmp_path / "warehouse" / "ns" / "t"
        assert detect_format(str(root)) == "iceberg"
        ds = open_source(str(root), columns=("f0", "f1", "f2")).load()
        assert ds.n_samples == len(data)


class TestIcechunk(SourceTests):
    def make(self, tmp_path, X, chunk_bytes):
        import icechunk

        path = tmp_path / "repo"
        if not path.exists():
            repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(path)))
            session = repo.writable_session("main")
            g = zarr.open_group(session.store, mode="w")
            g.create_array("x", shape=X.shape, chunks=(100, X.shape[1]), dtype=X.dtype)[:] = X
            session.commit("data")
        assert detect_format(str(path)) == "icechunk"
        return open_source(str(path), chunk_bytes=chunk_bytes)


# ---------------------------------------------------------------- snapshots
def _assert_same_model(X, rows):
    """distgmm on the source equals scikit-learn on the oracle's rows (any order)."""
    import warnings

    from conftest import sklearn_start
    from sklearn.mixture import GaussianMixture as SK

    start = sklearn_start(rows, 2, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SK(2, max_iter=10, tol=0, **start).fit(rows)
        gm = GaussianMixture(2, max_iter=10, tol=0, **start).fit(X)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-9)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-9)


@pytest.fixture
def delta_history(tmp_path):
    """Version 0: 300 rows (d1); 1: d1 replaced by 200 rows; 2: rows 50..99 deleted."""
    from deltalake import DeltaTable, write_deltalake

    X = blobs(n=500, d=2, k=2, seed=4)[0]
    path = str(tmp_path / "events")
    write_deltalake(path, _table(X[:300], 0, "d1"), partition_by=["date"])
    write_deltalake(path, _table(X[300:500], 300, "d1"), mode="overwrite",
                    predicate="date = 'd1'")
    write_deltalake(path, _table(X[:100], 1000, "d2"), mode="append")
    DeltaTable(path).delete("row_id >= 350 AND row_id < 400")
    return path, X


def _oracle(path, version=None, filters=None):
    from deltalake import DeltaTable

    t = DeltaTable(path, version=version).to_pyarrow_table(filters=filters)
    t = t.sort_by("row_id")
    return np.column_stack([t["f0"].to_numpy(), t["f1"].to_numpy()]), t["row_id"].to_numpy()


def _sorted_rows(ds):
    frame = ds.frame.compute()
    order = np.argsort(frame["row_id"].to_numpy())
    return ds.X.compute()[order], frame["row_id"].to_numpy()[order]


def test_delta_reads_exactly_the_current_snapshot(delta_history, client):
    path, _ = delta_history
    ds = DeltaSource(path, columns=("f0", "f1"), id_column="row_id").load()
    want, ids = _oracle(path)
    got, got_ids = _sorted_rows(ds)
    assert ds.n_samples == len(want) == 250 and ds.description["version"] == 3
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, want)
    _assert_same_model(ds.X, want)


def test_delta_time_travel_and_partition_filters(delta_history):
    path, X = delta_history
    v0 = DeltaSource(path, version=0, columns=("f0", "f1")).load()
    np.testing.assert_array_equal(v0.X.compute(), X[:300])
    ds = DeltaSource(path, columns=("f0", "f1"), id_column="row_id",
                     filters=("date == 'd2'",)).load()
    assert ds.description["files"] == 1 and ds.description["row_filters"] == []
    assert ds.n_samples == 100
    got, ids = _sorted_rows(ds)
    want, want_ids = _oracle(path, filters=[("date", "=", "d2")])
    np.testing.assert_array_equal(ids, want_ids)
    # a filter on a data column: allowed, applied to rows as they are read
    ds = DeltaSource(path, columns=("f0", "f1"), id_column="row_id",
                     filters=("row_id < 320",)).load()
    assert ds.description["row_filters"] == [["row_id", "<", 320]]
    assert sorted(ds.frame["row_id"].compute()) == list(range(300, 320))
    with pytest.raises(ValueError, match="has no version 7"):
        DeltaSource(path, version=7).load()
    with pytest.raises(ValueError, match="did not exist at 2001"):
        DeltaSource(path, as_of="2001-01-01T00:00:00Z").load()


def _z85(data: bytes) -> str:
    alphabet = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                ".-:+=^!/*?&<>()[]{}@%$#")
    out = []
    for i in range(0, len(data), 4):
        v, word = int.from_bytes(data[i:i + 4], "big"), ""
        for _ in range(5):
            word, v = alphabet[v % 85] + word, v // 85
        out.append(word)
    return "".join(out)


def _delete_with_a_deletion_vector(path, deleted):
    """Commit an inline deletion vector (as Spark or Databricks write them; deltalake's
    own delete rewrites files instead) marking ``deleted`` rows of the table's one file."""
    import json
    import struct
    import time

    from deltalake import DeltaTable, TableFeatures

    dt = DeltaTable(path)
    dt.alter.add_feature([TableFeatures.DeletionVectors], allow_protocol_versions_increase=True)
    dt = DeltaTable(path)
    (act,) = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    # RoaringBitmapArray: magic, one bitmap (key 0) in the portable roaring format
    values = b"".join(struct.pack("<H", v) for v in deleted)
    bitmap = struct.pack("<IIHHI", 12346, 1, 0, len(deleted) - 1, 16) + values
    data = struct.pack("<iqi", 1681511377, 1, 0) + bitmap
    data += b"\0" * (-len(data) % 4)
    now = int(time.time() * 1000)
    common = {"path": act["path"], "partitionValues": {}, "size": act["size_bytes"],
              "dataChange": True}
    dv = {"storageType": "i", "pathOrInlineDv": _z85(data), "sizeInBytes": len(data),
          "cardinality": len(deleted)}
    actions = [{"commitInfo": {"timestamp": now, "operation": "DELETE",
                               "operationParameters": {}}},
               {"remove": {**common, "deletionTimestamp": now}},
               {"add": {**common, "modificationTime": now, "deletionVector": dv,
                        "stats": json.dumps({"numRecords": act["num_records"]})}}]
    log = f"{path}/_delta_log/{dt.version() + 1:020d}.json"
    with open(log, "w") as fh:
        fh.write("\n".join(json.dumps(a) for a in actions) + "\n")


def test_delta_deletion_vectors_are_honoured(tmp_path):
    from deltalake import DeltaTable, write_deltalake

    X = blobs(n=40, d=2, k=2, seed=8)[0]
    path = str(tmp_path / "dv")
    write_deltalake(path, _table(X))
    _delete_with_a_deletion_vector(path, [1, 3, 30])
    oracle = pa.table(DeltaTable(path).scan()).sort_by("row_id")  # deltalake's own reader
    assert oracle.num_rows == 37
    ds = DeltaSource(path, columns=("f0", "f1"), id_column="row_id").load()
    assert ds.X.chunks[0] == (37,)  # known from the log, before any read
    got, ids = _sorted_rows(ds)
    np.testing.assert_array_equal(ids, oracle["row_id"].to_numpy())
    np.testing.assert_array_equal(got[:, 1], oracle["f1"].to_numpy())


def test_iceberg_snapshots_and_deletes(tmp_path):
    cat, props = _catalog(tmp_path)
    X = blobs(n=400, d=2, k=2, seed=5)[0]
    t = cat.create_table("ns.ev", schema=_table(X[:1], 0, "d1").schema)
    t.append(_table(X[:300], 0, "d1"))
    first = t.current_snapshot().snapshot_id
    t.append(_table(X[300:], 300, "d2"))
    t.delete("row_id < 100")
    t = cat.load_table("ns.ev")
    want = t.scan().to_arrow().sort_by("row_id")
    ds = IcebergSource("iceberg://lake/ns.ev", columns=("f0", "f1"), id_column="row_id",
                       storage_options=props).load()
    got, ids = _sorted_rows(ds)
    np.testing.assert_array_equal(ids, want["row_id"].to_numpy())
    np.testing.assert_array_equal(got[:, 0], want["f0"].to_numpy())
    _assert_same_model(ds.X, np.column_stack([want["f0"].to_numpy(), want["f1"].to_numpy()]))
    assert ds.description["snapshot"] == t.current_snapshot().snapshot_id
    old = IcebergSource("iceberg://lake/ns.ev", snapshot=first, columns=("f0", "f1"),
                        storage_options=props).load()
    np.testing.assert_array_equal(np.sort(old.X.compute(), axis=0), np.sort(X[:300], axis=0))
    flt = IcebergSource("iceberg://lake/ns.ev", columns=("f0", "f1"), id_column="row_id",
                        filters=("date == 'd2'",), storage_options=props).load()
    assert sorted(flt.frame["row_id"].compute()) == list(range(300, 400))
    with pytest.raises(ValueError, match="has no snapshot 12345"):
        IcebergSource("iceberg://lake/ns.ev", snapshot=12345, storage_options=props).load()
    again = IcebergSource("iceberg://lake/ns.ev", columns=("f0", "f1"), id_column="row_id",
                          storage_options=props).load()
    assert again.X.name == ds.X.name  # the same snapshot gets the same graph keys


def test_iceberg_reads_plain_parquet_only_where_nothing_needs_resolving(tmp_path,
                                                                       monkeypatch):
    """Small files stored under the table's field ids, names and types are read with
    pyarrow; a renamed column or a promoted type goes through pyiceberg. Rows always
    equal pyiceberg's own scan."""
    import dask
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.types import DoubleType

    scans = []
    to_table = ArrowScan.to_table
    monkeypatch.setattr(ArrowScan, "to_table", lambda self, tasks: scans.append(
        len(list(tasks))) or to_table(self, tasks))

    def check(ident, columns, by_pyiceberg):
        scans.clear()
        ds = IcebergSource(f"iceberg://lake/{ident}", columns=columns, id_column="row_id",
                           storage_options=props).load()
        with dask.config.set(scheduler="synchronous"):  # reads in this process, counted
            got, ids = _sorted_rows(ds)
        assert bool(scans) == by_pyiceberg, scans
        want = cat.load_table(ident).scan().to_arrow().sort_by("row_id")
        np.testing.assert_array_equal(ids, want["row_id"].to_numpy())
        np.testing.assert_array_equal(got, np.column_stack(
            [want[c].to_numpy().astype(float) for c in columns]))

    cat, props = _catalog(tmp_path)
    X = blobs(n=300, d=2, k=2, seed=9)[0]
    t = cat.create_table("ns.plain", schema=_table(X[:1]).schema)
    for rows in np.array_split(np.arange(300), 3):
        t.append(_table(X[rows], rows[0]))
    check("ns.plain", ("f0", "f1"), False)  # read as plain Parquet
    with t.update_schema() as update:
        update.rename_column("f0", "g0")
    t = cat.load_table("ns.plain")
    t.append(pa.table({"g0": X[:50, 0], "f1": X[:50, 1], "row_id": np.arange(300, 350)}))
    check("ns.plain", ("g0", "f1"), True)  # the old files store the column as f0
    t.delete("row_id < 20")  # pyiceberg rewrites the file (no delete files)
    check("ns.plain", ("g0", "f1"), True)  # the older files still store f0
    t32 = cat.create_table("ns.f32", schema=pa.schema([("x", pa.float32()),
                                                       ("row_id", pa.int64())]))
    t32.append(pa.table({"x": X[:40, 0].astype(np.float32), "row_id": np.arange(40)}))
    with t32.update_schema() as update:
        update.update_column("x", field_type=DoubleType())
    cat.load_table("ns.f32").append(pa.table({"x": X[40:80, 0], "row_id": np.arange(40, 80)}))
    check("ns.f32", ("x",), True)  # float stored, double wanted: pyiceberg promotes


def test_iceberg_plain_reads_refuse_filters_deletes_and_nested_columns(tmp_path):
    from types import SimpleNamespace

    from pyiceberg.expressions import AlwaysTrue, EqualTo

    from distgmm.io.sources.iceberg import IcebergScan

    cat, _ = _catalog(tmp_path)
    schema = pa.schema([("f0", pa.float64()), ("s", pa.struct([("a", pa.int64())]))])
    t = cat.create_table("ns.st", schema=schema)
    t.append(pa.table({"f0": [1.0, 2.0], "s": [{"a": 1}, {"a": 2}]}, schema=schema))
    tasks = list(t.scan().plan_files())

    def plain(tasks, columns, row_filter=None):
        return IcebergScan(t.metadata, t.io, t.scan().projection(),
                           row_filter or AlwaysTrue()).plain(tasks, columns)

    assert plain(tasks, ["f0"])[0]["f0"].to_pylist() == [1.0, 2.0]
    assert plain(tasks, ["f0", "s"]) is None  # nested field ids are not compared
    assert plain(tasks, ["f0"], EqualTo("f0", 1.0)) is None
    with_deletes = [SimpleNamespace(file=tasks[0].file, delete_files={object()})]
    assert plain(with_deletes, ["f0"]) is None


def test_iceberg_current_snapshot_is_read_with_the_current_schema(tmp_path):
    import dask

    cat, props = _catalog(tmp_path)
    t = cat.create_table("ns.rn", schema=pa.schema([("f0", pa.float64()),
                                                    ("row_id", pa.int64())]))
    t.append(pa.table({"f0": [1.0, 2.0], "row_id": [0, 1]}))
    first = t.current_snapshot().snapshot_id
    with t.update_schema() as update:  # no commit of data since: the snapshot is older
        update.rename_column("f0", "g0")
    now = IcebergSource("iceberg://lake/ns.rn", columns=("g0",), storage_options=props).load()
    then = IcebergSource("iceberg://lake/ns.rn", columns=("f0",), snapshot=first,
                         storage_options=props).load()
    with dask.config.set(scheduler="synchronous"):
        assert now.X.compute().ravel().tolist() == [1.0, 2.0]
        assert then.X.compute().ravel().tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"\['g0'\] not in the Iceberg table"):
        IcebergSource("iceberg://lake/ns.rn", columns=("g0",), snapshot=first,
                      storage_options=props).load()


def test_icechunk_branch_tag_and_snapshot(tmp_path):
    import icechunk

    X = blobs(n=300, d=2, k=2, seed=6)[0]
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r")))
    s = repo.writable_session("main")
    g = zarr.open_group(s.store, mode="w")
    g.create_array("x", shape=(200, 2), chunks=(50, 2), dtype="f8")[:] = X[:200]
    first = s.commit("first")
    repo.create_tag("v1", first)
    s = repo.writable_session("main")
    z = zarr.open_group(s.store, mode="a")["x"]
    z.resize((300, 2))
    z[200:] = X[200:]
    second = s.commit("second")
    path = str(tmp_path / "r")
    now = IcechunkSource(path).load()
    assert now.description["snapshot"] == second
    np.testing.assert_array_equal(now.X.compute(), X)
    _assert_same_model(now.X, X)
    for kw in ({"snapshot": first}, {"version": "v1"}):
        ds = IcechunkSource(path, **kw).load()
        np.testing.assert_array_equal(ds.X.compute(), X[:200])
    with pytest.raises(ValueError, match="no branch or tag 'nope'"):
        IcechunkSource(path, version="nope").load()
    with pytest.raises(ValueError, match="has no snapshot"):
        IcechunkSource(path, snapshot="AAAAAAAAAAAAAAAAAAAA").load()


# ---------------------------------------------------------------- jobs and tables out
def _daily_spec(lake, out, date, **output):
    from distgmm import JobSpec

    raw = {
        "name": "daily",
        "input": {"path": lake, "columns": ["f0", "f1"], "id_column": "row_id",
                  "filters": ["date == '{date}'"]},
        "model": {"n_components": 2, "max_iter": 20},
        "output": {"path": f"{out}/runs/{{date}}", "format": "delta", "log_likelihood": True,
                   "table": f"{out}/predictions", "partition": {"date": "{date}"},
                   **output},
    }
    return JobSpec.from_mapping(raw, [f"date={date}"])


def test_daily_runs_commit_one_partition_each(delta_history, tmp_path, client):
    from deltalake import DeltaTable

    from distgmm import load_model, run_job

    lake, _ = delta_history
    out = str(tmp_path / "results")
    m1 = run_job(_daily_spec(lake, out, "d1"), client=client)
    m2 = run_job(_daily_spec(lake, out, "d2"), client=client)
    assert m1["input"]["version"] == m2["input"]["version"] == 3
    assert m1["outputs"]["table"]["version"] == 0 and m2["outputs"]["table"]["version"] == 1
    dt = DeltaTable(f"{out}/predictions")
    history = dt.history()
    assert [h["version"] for h in history] == [1, 0]
    assert {h["distgmm.partition"] for h in history} == {'{"date": "d1"}', '{"date": "d2"}'}
    got = dt.to_pandas()
    for date, n in (("d1", 150), ("d2", 100)):
        day = got[got.date == date].sort_values("row_id")
        src, ids = _oracle(lake, filters=[("date", "=", date)])
        assert len(day) == n == len(ids)
        np.testing.assert_array_equal(day.row_id, ids)
        model = load_model(f"{out}/runs/{date}")
        np.testing.assert_array_equal(day.label, model.predict(src))
        np.testing.assert_allclose(day.log_likelihood, model.score_samples(src), rtol=1e-10)
    # a rerun of a published day, even with --overwrite, commits nothing new
    run_job(_daily_spec(lake, out, "d2"), client=client)
    again = run_job(_daily_spec(lake, out, "d2", overwrite=True), client=client)
    assert again["outputs"]["table"] == {"format": "delta", "url": f"{out}/predictions",
                                         "version": 1, "partition": {"date": "d2"},
                                         "committed": False}
    assert DeltaTable(f"{out}/predictions").version() == 1
    # the table changed: the same day is refitted and replaced in one more commit
    from deltalake import write_deltalake

    write_deltalake(lake, _table(np.ones((3, 2)), 5000, "d2"), mode="append")
    third = run_job(_daily_spec(lake, out, "d2", overwrite=True), client=client)
    assert third["outputs"]["table"]["version"] == 2
    after = DeltaTable(f"{out}/predictions").to_pandas()
    assert (after.date == "d2").sum() == 103 and (after.date == "d1").sum() == 150


def test_resume_refuses_another_snapshot(delta_history, tmp_path, client):
    from deltalake import DeltaTable

    from distgmm import JobSpec
    from distgmm.io.checkpoint import Checkpoint, CheckpointMismatch
    from distgmm.io.sources import open_source
    from distgmm.jobs.events import Reporter
    from distgmm.jobs.load import checkpoint_url, input_fingerprint, load_input

    lake, _ = delta_history

    def spec(out="o", **input):
        return JobSpec.from_mapping({"input": {"path": lake, "columns": ["f0", "f1"], **input},
                                     "model": {"n_components": 2, "max_iter": 2},
                                     "output": {"path": str(tmp_path / out)}})

    def checkpoint_of(s):  # an interrupted fit of the job on the current snapshot
        src = open_source(lake, **s.input.source_options())
        ds = src.load()
        ckpt = Checkpoint(checkpoint_url(s.output.path),
                          {"job": s.fingerprint(), "input": input_fingerprint(ds)})
        GaussianMixture(2, max_iter=2, random_state=0).fit(ds.X, checkpoint=ckpt)
        return src

    src = checkpoint_of(spec())
    DeltaTable(lake).delete("row_id < 320")  # the table moves on: version 4
    with pytest.raises(CheckpointMismatch, match="different input"):
        load_input(spec(), src, client, Reporter(quiet=True))
    pinned = spec("p", version=3)  # a run pinned to its snapshot resumes on it
    src = checkpoint_of(pinned)
    loaded = load_input(pinned, src, client, Reporter(quiet=True))
    assert loaded.dataset.description["version"] == 3 and loaded.checkpoint.exists()


def test_icechunk_output_one_commit_per_run(tmp_path, client):
    import icechunk

    from distgmm import JobSpec, load_model, run_job

    X = blobs(n=600, d=2, k=2, seed=7)[0]
    np.save(tmp_path / "x.npy", X)
    repo_url = str(tmp_path / "labels")
    spec = JobSpec.from_mapping({
        "name": "grid", "input": {"path": str(tmp_path / "x.npy"), "chunk_rows": 200},
        "model": {"n_components": 2},
        "output": {"path": str(tmp_path / "out"), "format": "icechunk", "table": repo_url,
                   "probabilities": True}})
    metrics = run_job(spec, client=client)
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(repo_url))
    commits = list(repo.ancestry(branch="main"))
    assert len(commits) == 2 and spec.fingerprint() in commits[0].message
    assert metrics["outputs"]["table"]["snapshot"] == commits[0].id
    g = zarr.open_group(repo.readonly_session(branch="main").store, mode="r")
    model = load_model(str(tmp_path / "out"))
    np.testing.assert_array_equal(g["label"][:], model.predict(X))
    np.testing.assert_allclose(g["probabilities"][:], model.predict_proba(X), rtol=1e-10)
    assert not (tmp_path / "out" / "predictions.zarr").exists()
    # the same job on the same input again (replacing its output): no new commit
    again = run_job(JobSpec.from_mapping({**spec.model_dump(mode="json"),
                                          "output": {**spec.output.model_dump(mode="json"),
                                                     "overwrite": True}}), client=client)
    assert again["outputs"]["table"]["committed"] is False
    assert len(list(repo.ancestry(branch="main"))) == 2


# ---------------------------------------------------------------- the command
class _Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def _cli(client, *args):
    """The command, in this process (fast), on the shared cluster."""
    import contextlib
    import io

    from distgmm.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in (*args, "--address", client.scheduler.address)])
            code = 0
        except SystemExit as e:
            code = e.code
    return _Result(code, err.getvalue())


def _nothing_written(tmp_path, name="out"):
    return not (tmp_path / name).exists() and not (tmp_path / f".{name}.checkpoint.json").exists()


def test_cli_time_travel_and_bad_versions(delta_history, tmp_path, client):
    import json

    lake, _ = delta_history
    common = (lake, "-k", "2", "--columns", "f0,f1", "-q")
    r = _cli(client, "fit", *common, "--table-version", "0", "-o", tmp_path / "v0")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "v0" / "metrics.json").read_text())
    assert metrics["n_samples"] == 300 and metrics["input"]["version"] == 0
    for flags, message in [
        (("--table-version", "9"), "has no version 9"),
        (("--as-of", "2001-01-01T00:00:00Z"), "did not exist at 2001"),
        (("--as-of", "yesterday"), "is not an ISO timestamp"),
        (("--snapshot", "5"), r"\['snapshot'\] do not apply to delta input"),
        (("--filter", "nope == 1"), r"Filter column\(s\) \['nope'\] not in"),
    ]:
        r = _cli(client, "fit", *common, *flags, "-o", tmp_path / "out")
        assert r.returncode == 2, (flags, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("distgmm: error: "), r.stderr
        assert re.search(message, lines[0]), lines[0]
        assert _nothing_written(tmp_path)


def test_cli_iceberg_through_a_configured_catalog(tmp_path, client):
    import yaml

    cat, props = _catalog(tmp_path)
    X = blobs(n=300, d=2, k=2, seed=9)[0]
    t = cat.create_table("ns.ev", schema=_table(X[:1]).schema)
    t.append(_table(X))
    # a job spec naming the catalog's settings
    job = {"input": {"path": "iceberg://lake/ns.ev", "columns": ["f0", "f1"],
                     "storage_options": props, "snapshot": 42},
           "model": {"n_components": 2}, "output": {"path": str(tmp_path / "out")}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    r = _cli(client, "run", tmp_path / "job.yaml", "-q")
    assert r.returncode == 2 and "has no snapshot 42" in r.stderr and _nothing_written(tmp_path)


@pytest.mark.slow  # a fresh process: pyiceberg reads its configuration at import
def test_cli_iceberg_catalog_from_pyiceberg_config(tmp_path, client):
    import json

    from conftest import run_cli

    cat, props = _catalog(tmp_path)
    X = blobs(n=300, d=2, k=2, seed=9)[0]
    t = cat.create_table("ns.ev", schema=_table(X[:1]).schema)
    t.append(_table(X))
    env = {f"PYICEBERG_CATALOG__LAKE__{k.upper()}": v for k, v in props.items()}
    r = run_cli("fit", "iceberg://lake/ns.ev", "-k", "2", "--columns", "f0,f1", "-q",
                "-o", tmp_path / "ok", address=client.scheduler.address, extra_env=env)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert metrics["input"]["snapshot"] == t.current_snapshot().snapshot_id
    assert metrics["n_samples"] == 300


def test_spec_keys_for_tables(tmp_path):
    from distgmm import JobSpec

    path = tmp_path / "job.yaml"
    path.write_text("input: {path: lake, format: delta, version: 3, as_of: null}\n"
                    "model: {n_components: 2}\n"
                    "output: {path: out, format: delta, table: t, partition: {date: '{date}'}}\n")
    spec = JobSpec.from_file(str(path), ["date=2026-11-22"])
    assert spec.input.source_options()["version"] == 3
    assert spec.output.partition == {"date": "2026-11-22"}
    when = JobSpec.from_mapping({"input": {"path": "x", "as_of": "2026-11-21T00:00:00Z"},
                                 "model": {"n_components": 2}, "output": {"path": "o"}})
    assert when.input.as_of == "2026-11-21T00:00:00Z"
    with pytest.raises(ValueError, match=r"partition column\(s\) \['date'\] are also"):
        JobSpec.from_mapping({"input": {"path": "x", "passthrough": ["date"]},
                              "model": {"n_components": 2},
                              "output": {"path": "o", "format": "delta", "table": "t",
                                         "partition": {"date": "d"}}})
    with pytest.raises(ValueError, match="output.partition needs format: delta"):
        JobSpec.from_mapping({"input": {"path": "x"}, "model": {"n_components": 2},
                              "output": {"path": "o", "partition": {"date": "d"}}})


def test_delta_output_of_an_array_input_keeps_row_numbers(tmp_path, client):
    from deltalake import DeltaTable

    from distgmm import JobSpec, load_model, run_job

    X = blobs(n=500, d=2, k=2, seed=10)[0]
    np.save(tmp_path / "x.npy", X)
    spec = JobSpec.from_mapping({
        "input": {"path": str(tmp_path / "x.npy"), "chunk_rows": 150},
        "model": {"n_components": 2},
        "output": {"path": str(tmp_path / "out"), "format": "delta", "probabilities": True}})
    metrics = run_job(spec, client=client)
    dt = DeltaTable(str(tmp_path / "out" / "predictions.delta"))  # published with the run
    assert dt.version() == 0 and len(dt.file_uris()) == 4
    got = dt.to_pandas().sort_values("row")
    model = load_model(str(tmp_path / "out"))
    np.testing.assert_array_equal(got["row"], np.arange(500))
    np.testing.assert_array_equal(got["label"], model.predict(X))
    np.testing.assert_allclose(got[["prob_0", "prob_1"]], model.predict_proba(X), rtol=1e-10)
    assert metrics["outputs"]["predictions"] == "predictions.delta"
    assert metrics["cluster_sizes"] == np.bincount(model.predict(X), minlength=2).tolist()


def test_benchmark_smoke(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "tables.py"
    spec = importlib.util.spec_from_file_location("bench_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "t.md"
    assert module.main(["--rows", "3000", "--files", "2", "--repeat", "1", "--out",
                        str(out)]) == 0
    text = out.read_text()
    assert "| delta |" in text and "| iceberg |" in text and "| parquet | " in text
