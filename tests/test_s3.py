"""The S3 protocol end to end, against moto_server on 127.0.0.1 through s3fs.

Zarr and hive-partitioned Parquet inputs, outputs, ``_SUCCESS``, model files,
checkpoints and resume, ``distgmm predict``, ``load_model("s3://...")``; credentials from
the environment and from ``--storage-option``; what a reader sees during a publish; and
object-store failures as one line with exit 2 (credentials) or 75 (unreachable).
"""

import json
import posixpath
import threading

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import blobs, run_cli

from distgmm import GaussianMixture, load_model
from distgmm.io.checkpoint import Checkpoint
from distgmm.io.publish import SUCCESS, Publication, is_published
from distgmm.io.sources.registry import detect_format

SMALL = ["--n-workers", "1", "--threads-per-worker", "1", "-q"]
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="module")
def X():
    return blobs(n=1200, d=3, k=3, seed=11)[0]


def put_zarr(s3, name, X):
    z = zarr.create_array(store=s3.url(name), shape=X.shape, dtype="f8", chunks=(300, 3),
                          storage_options=s3.storage_options)
    z[:] = X
    return s3.url(name)


def put_lake(s3, X, name="events"):
    """A hive-partitioned Parquet dataset: date=.../part-0.parquet, ids 0..n-1."""
    fs = s3.fs()
    half = len(X) // 2
    for i, day in enumerate(["2026-11-20", "2026-11-21"]):
        rows = slice(i * half, (i + 1) * half if i == 0 else len(X))
        df = pd.DataFrame(X[rows], columns=["a", "b", "c"])
        df["id"] = np.arange(len(X))[rows]
        with fs.open(f"{s3.bucket}/{name}/date={day}/part-0.parquet", "wb") as fh:
            df.to_parquet(fh, index=False)
    return s3.url(name)


def cred_options(s3) -> list[str]:
    so = s3.storage_options
    return [a for k in ("key", "secret", "endpoint_url")
            for a in ("--storage-option", f"{k}={so[k]}")]


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("distgmm: error: "), proc.stderr
    return lines[0]


def keys(s3) -> list[str]:
    return sorted(s3.fs().find(s3.bucket))


def reference(X, k=3):
    return GaussianMixture(k, random_state=0).fit(X)


@pytest.mark.slow  # embedded clusters started by the CLI
def test_zarr_fit_with_credentials_from_the_environment(s3, X):
    url = put_zarr(s3, "x.zarr", X)
    out = s3.url("out")
    proc = run_cli("fit", url, "-k", 3, "-o", out, *SMALL)
    assert proc.returncode == 0, proc.stderr
    fs = s3.fs()
    names = sorted(posixpath.relpath(p, f"{s3.bucket}/out") for p in fs.find(out))
    manifest = json.loads(fs.cat_file(posixpath.join(out, SUCCESS)))["files"]
    assert sorted(manifest) == [n for n in names if n != SUCCESS]
    assert {"metrics.json", "model/model.json"} <= set(names)
    assert any(n.startswith("predictions.zarr/") for n in names)
    # nothing but the input and the output: no staging prefix, no checkpoint
    assert {p.split("/")[1] for p in keys(s3)} == {"x.zarr", "out"}
    ref = reference(X)
    model = load_model(out)  # credentials and endpoint from the environment
    np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-6, atol=1e-8)
    labels = zarr.open_group(posixpath.join(out, "predictions.zarr"), mode="r",
                             storage_options=s3.storage_options)["label"][:]
    np.testing.assert_array_equal(labels, ref.predict(X))


@pytest.fixture
def uncredentialed_workers(scheduler_address):
    """The session's `dask worker` cluster (already warm, unlike an embedded cluster per
    command), its workers checked to hold no AWS credentials in their environment: the
    storage options have to reach them with the job."""
    import os

    from distributed import Client

    with Client(scheduler_address, timeout="30s") as c:
        for name in AWS_VARS:
            assert not any(c.run(os.getenv, name).values()), f"a worker has {name}"
    return scheduler_address


@pytest.mark.slow  # several CLI runs
def test_parquet_lake_with_storage_options_only(s3, X, monkeypatch, uncredentialed_workers):
    lake = put_lake(s3, X)
    for name in AWS_VARS:
        monkeypatch.delenv(name)
    out, pred = s3.url("out"), s3.url("pred")
    common = ["--columns", "a,b,c", "--id-column", "id", "-q"]
    at = {"address": uncredentialed_workers}
    # the format is found by looking inside s3://.../events (hive partitions)
    proc = run_cli("fit", lake, "-k", 3, "-o", out, *common, *cred_options(s3), **at)
    assert proc.returncode == 0, proc.stderr
    so = s3.storage_options
    model = load_model(out, storage_options=so)
    np.testing.assert_allclose(model.means_, reference(X).means_, rtol=1e-6, atol=1e-8)
    got = pd.read_parquet(posixpath.join(out, "predictions.parquet"), storage_options=so)
    got = got.sort_values("id")
    np.testing.assert_array_equal(got["id"], np.arange(len(X)))
    np.testing.assert_array_equal(got["label"], model.predict(X))
    # predict with the saved model on S3; the same prediction job again is a no-op
    for _ in range(2):
        proc = run_cli("predict", out, lake, "-o", pred, *common, *cred_options(s3), **at)
        assert proc.returncode == 0, proc.stderr
    again = pd.read_parquet(posixpath.join(pred, "predictions.parquet"), storage_options=so)
    np.testing.assert_array_equal(again.sort_values("id")["label"], got["label"])
    info = run_cli("info", out, *cred_options(s3))
    assert info.returncode == 0 and "3 components" in info.stdout, info.stderr
    # without the options and without the environment there are no credentials
    before = keys(s3)
    proc = run_cli("fit", lake, "-k", 3, "-o", s3.url("other"), *common, **at)
    assert proc.returncode == 2
    assert "no usable credentials for s3://" in one_error_line(proc)
    assert keys(s3) == before


@pytest.mark.slow  # several CLI runs
def test_run_a_job_spec_with_storage_options_and_rerun(s3, X, tmp_path, monkeypatch,
                                                       uncredentialed_workers):
    lake = put_lake(s3, X)
    for name in AWS_VARS:
        monkeypatch.delenv(name)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: daily\ninput: {{path: '{lake}', columns: [a, b, c], "
        "filters: [\"date == '{date}'\"]}\n"
        "model: {n_components: 2}\n"
        f"output: {{path: '{s3.url('clusters', '{date}')}'}}\n")
    args = ["run", spec, "--set", "date=2026-11-20", *cred_options(s3)]
    assert run_cli("validate", spec, "--set", "date=2026-11-20",
                   *cred_options(s3)).returncode == 0
    first = run_cli(*args, address=uncredentialed_workers)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, address=uncredentialed_workers)
    assert second.returncode == 0, second.stderr
    assert "already published" in second.stdout + second.stderr
    metrics = json.loads(s3.fs().cat_file(s3.url("clusters", "2026-11-20", "metrics.json")))
    assert metrics["n_samples"] == len(X) // 2


class Killed(Exception):
    pass


def test_checkpoint_on_s3_resumes_bit_for_bit(s3, X):
    kw = dict(n_components=3, tol=0, max_iter=8, random_state=0, n_init=2)
    ref = GaussianMixture(**kw).fit(X)
    url = s3.url("ckpt", "c.json")

    def kill(info):
        if (info.init, info.n_iter) == (1, 4):
            raise Killed()

    with pytest.raises(Killed):
        GaussianMixture(**kw).fit(X, callback=kill,
                                  checkpoint=Checkpoint(url, {"job": "s3"}, s3.storage_options))
    assert s3.fs().exists(url)
    seen = []
    resumed = GaussianMixture(**kw).fit(
        X, callback=lambda info: seen.append((info.init, info.n_iter)),
        checkpoint=Checkpoint(url, {"job": "s3"}, s3.storage_options))
    assert seen and min(n for _, n in seen) >= 4  # resumed, not started again
    for attr in ("weights_", "means_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(resumed, attr), getattr(ref, attr))
    assert resumed.lower_bounds_ == ref.lower_bounds_


def test_job_killed_before_publish_resumes_from_its_s3_checkpoint(client, s3, X, monkeypatch):
    import distgmm.jobs.pipeline as runner
    from distgmm import JobSpec, run_job

    url = put_zarr(s3, "x.zarr", X)
    so = s3.storage_options
    spec = JobSpec.from_mapping({
        "input": {"path": url, "storage_options": so},
        "model": {"n_components": 3, "tol": 1e-8, "max_iter": 30},
        "output": {"path": s3.url("out"), "storage_options": so},
    })
    real = runner.write_results

    def killed(*a, **k):
        raise Killed()

    monkeypatch.setattr(runner, "write_results", killed)
    with pytest.raises(Killed):
        run_job(spec, client=client)
    assert sorted(p.split("/", 1)[1] for p in keys(s3) if "x.zarr" not in p) == [
        ".out.checkpoint.json"]
    monkeypatch.setattr(runner, "write_results", real)
    events = []

    class Spy:
        quiet, log_format = False, "json"

        def event(self, name, message="", **fields):
            events.append(name)

        def iteration(self, info):
            events.append("iteration")

        def wait(self, futures, label):
            pass

    run_job(spec, client=client, reporter=Spy())
    assert "resume" in events and "iteration" not in events
    assert not s3.fs().exists(s3.url(".out.checkpoint.json"))
    assert is_published(s3.url("out"), so)
    ref = GaussianMixture(3, tol=1e-8, max_iter=30, random_state=0).fit(X)
    np.testing.assert_allclose(load_model(s3.url("out"), storage_options=so).means_,
                               ref.means_, rtol=1e-6, atol=1e-8)


def test_remote_format_detection(s3, X):
    so = s3.storage_options
    lake = put_lake(s3, X)
    assert detect_format(lake, so) == "parquet"
    grid = put_zarr(s3, "grid", X)  # a Zarr store without the .zarr suffix
    assert detect_format(grid, so) == "zarr"
    with pytest.raises(FileNotFoundError, match="check the input path"):
        detect_format(s3.url("nothing-here"), so)


# ------------------------------------------------------------------ publishing on S3

def _reader(s3):
    """A boto3 client of a reader's own (not the publisher's s3fs, and no cache)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3.server.endpoint, region_name="us-east-1",
                        aws_access_key_id=s3.server.key,
                        aws_secret_access_key=s3.server.secret)


def _listing(s3, prefix, reader=None):
    """What a reader sees under ``prefix`` right now (a client of its own: ``reader``, or
    a new one)."""
    c = reader or _reader(s3)
    pages = c.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])}


def _staged(pub, n):
    for i in range(n):
        pub.fs.pipe_file(posixpath.join(pub.staging, f"part-{i:03d}.bin"), b"x" * 100)
    return {f"part-{i:03d}.bin" for i in range(n)}


def test_readers_never_see_success_with_an_incomplete_output(s3):
    url = s3.url("out")
    pub = Publication(url, storage_options=s3.storage_options)
    snapshots, done = [], threading.Event()
    moments = {}
    real_copy, real_pipe = pub.fs.copy, pub.fs.pipe_file
    # one client per reader thread: a new boto3 client per listing cost ~25 ms of CPU,
    # and these two threads listed ~300 times while the publisher copied
    watcher, poller = _reader(s3), _reader(s3)

    def copy(*a, **k):  # the moments before the first and after the last file copied
        moments.setdefault("before copy", _listing(s3, "out", watcher))
        real_copy(*a, **k)
        moments["after copy"] = _listing(s3, "out", watcher)

    def pipe_file(path, *a, **k):
        real_pipe(path, *a, **k)
        if path.endswith(SUCCESS):
            moments["after _SUCCESS"] = _listing(s3, "out", watcher)

    def poll():
        while not done.is_set():
            snapshots.append(_listing(s3, "out", poller))

    with pub:
        files = _staged(pub, 60)
        pub.fs.copy, pub.fs.pipe_file = copy, pipe_file
        reader = threading.Thread(target=poll)
        reader.start()
    done.set()
    reader.join()
    snapshots.append(_listing(s3, "out"))
    assert moments == {"before copy": set(), "after copy": files,
                       "after _SUCCESS": files | {SUCCESS}}
    for seen in snapshots:  # whatever the timing: _SUCCESS only with every file
        if SUCCESS in seen:
            assert seen == files | {SUCCESS}
    assert snapshots[-1] == files | {SUCCESS}
    assert not [k for k in keys(s3) if ".staging-" in k]


def test_interrupted_publish_leaves_no_success(s3):
    url = s3.url("out")
    pub = Publication(url, storage_options=s3.storage_options)
    calls = []
    real = pub.fs._cp_file

    async def failing_copy(path1, path2, **kw):
        calls.append(path1)
        if len(calls) > 5:  # the endpoint stops answering part-way through the copy
            raise ConnectionResetError("connection reset by peer")
        return await real(path1, path2, **kw)

    with pytest.raises(ConnectionResetError), pub:
        files = _staged(pub, 30)
        pub.fs._cp_file = failing_copy
    seen = _listing(s3, "out")
    assert SUCCESS not in seen and not is_published(url, s3.storage_options)
    assert seen < files  # some objects were copied: readers must wait for _SUCCESS
    assert not [k for k in keys(s3) if ".staging-" in k]
