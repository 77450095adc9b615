"""Tables in, done right: dask DataFrames from read_parquet, decimals, timestamp
filters, corrupt files, column clashes, predict as a Series, predict reruns."""

import decimal
import glob
import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import blobs, invoke_main, run_cli

from distgmm import GaussianMixture, open_source


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Three files of several row groups: a, b floats, dec decimal128, ts/tsz timestamps,
    day date32, id."""
    d = tmp_path_factory.mktemp("lake")
    X = blobs(n=1800, d=2, k=3, seed=4)[0]
    start = pd.Timestamp("2026-01-01")
    for i in range(3):
        rows = slice(600 * i, 600 * (i + 1))
        ts = start + pd.to_timedelta(np.arange(600 * i, 600 * (i + 1)), unit="min")
        t = pa.table({
            "a": X[rows, 0], "b": X[rows, 1],
            "dec": pa.array([decimal.Decimal(f"{v:.3f}") for v in X[rows, 1]],
                            pa.decimal128(12, 3)),
            "ts": pa.array(ts), "tsz": pa.array(ts.tz_localize("UTC")),
            "day": pa.array(ts.date, pa.date32()),
            "id": np.arange(600 * i, 600 * (i + 1)),
        })
        pq.write_table(t, d / f"part-{i}.parquet", row_group_size=150)
    return d, X


def test_fit_on_read_parquet_with_projected_columns(lake):
    d, X = lake
    files = sorted(glob.glob(str(d / "*.parquet")))
    with dask.config.set(scheduler="synchronous"):
        got = GaussianMixture(3, random_state=0).fit(dd.read_parquet(files, columns=["a", "b"]))
    ref = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(got.means_, ref.means_, rtol=1e-6, atol=1e-8)
    assert list(got.feature_names_in_) == ["a", "b"]


def test_predict_on_a_dask_dataframe_is_a_series_on_its_index(lake):
    d, X = lake
    frame = dd.read_parquet(str(d), columns=["a", "b"], index="id")
    model = GaussianMixture(3, random_state=0).fit(X[:, :2])
    model.feature_names_in_ = np.array(["a", "b"], dtype=object)
    with dask.config.set(scheduler="synchronous"):
        labels = model.predict(frame)
        assert isinstance(labels, dd.Series) and labels.name == "label"
        got = labels.compute()
        whole = frame.compute()
    assert got.index.equals(whole.index)
    expected = pd.Series(model.predict(whole[["a", "b"]].to_numpy()), index=whole.index)
    pd.testing.assert_series_equal(got, expected, check_names=False, check_dtype=False)
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame.rename(columns={"a": "z"}))


def test_decimal_feature_columns_become_float(lake):
    d, _ = lake
    ds = open_source(str(d), columns=["a", "dec"]).load()
    with dask.config.set(scheduler="synchronous"):
        got = ds.X.compute()
    table = pq.read_table(str(d), columns=["a", "dec"])  # pyarrow's own reader
    # the nearest double to each decimal (Python's Decimal -> float is correctly rounded)
    want = np.column_stack([table["a"].to_numpy(),
                            [float(v) for v in table["dec"].to_pylist()]])
    assert ds.X.dtype == np.float64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("expr, arrow_filter", [
    ("ts < '2026-01-01 05:00:00'", ("ts", "<", pd.Timestamp("2026-01-01 05:00:00"))),
    ("tsz >= '2026-01-01 12:30'", ("tsz", ">=", pd.Timestamp("2026-01-01 12:30", tz="UTC"))),
    ("day == '2026-01-02'", ("day", "==", pd.Timestamp("2026-01-02").date())),
    ("ts in ['2026-01-01 00:00:00', '2026-01-01 10:00:00']",
     ("ts", "in", [pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-01 10:00")])),
])
def test_timestamp_columns_filter_with_iso_literals(lake, expr, arrow_filter):
    d, _ = lake
    ds = open_source(str(d), columns=["a", "b"], filters=[expr]).load()
    want = pq.read_table(str(d), columns=["a", "b"], filters=[arrow_filter])
    assert 0 < want.num_rows < 1800
    assert ds.n_samples == want.num_rows
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(np.sort(ds.X.compute()[:, 0]),
                                      np.sort(want["a"].to_numpy()))


def test_a_bad_timestamp_literal_is_one_line():
    from distgmm.io.sources.filters import typed_filter as _typed

    with pytest.raises(ValueError, match="holds timestamps; write the value as an ISO"):
        _typed(("ts", "<", "yesterday"), {"ts": np.dtype("datetime64[us]")})


def test_a_corrupt_file_is_named(lake, tmp_path):
    d, _ = lake
    bad = tmp_path / "lake"
    bad.mkdir()
    for f in glob.glob(str(d / "*.parquet")):
        os.link(f, bad / os.path.basename(f))
    (bad / "part-9.parquet").write_bytes(b"PAR1" + b"\0" * 40 + b"PAR1")
    proc = run_cli("fit", bad, "-k", 2, "--columns", "a,b", "-o", tmp_path / "out", "-q",
                   "--n-workers", "1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "part-9.parquet" in lines[0], proc.stderr
    assert "remove or rewrite that file" in lines[0]
    assert not (tmp_path / "out").exists()


def test_column_clashes_are_refused_before_the_fit_and_by_validate(lake, tmp_path):
    d, _ = lake
    spec = tmp_path / "job.yaml"
    spec.write_text(f"input: {{path: '{d}', columns: [a, b], id_column: id, "
                    "passthrough: [label]}\nmodel: {n_components: 3}\n"
                    f"output: {{path: '{tmp_path / 'out'}'}}\n")
    # main() in this process (conftest.invoke_main): both commands end before any
    # cluster, and the exit code and the messages checked are main()'s
    code, err = invoke_main(["validate", spec])
    assert code == 2
    assert "input.passthrough: Column(s) ['label'] clash" in err
    code, err, out = invoke_main(["fit", d, "-k", 3, "--columns", "a,b", "--passthrough",
                                  "prob_2", "-o", tmp_path / "out", "--n-workers", "1"],
                                 stdout=True)
    assert code == 2 and "['prob_2'] clash" in err, err
    assert "iter" not in out + err  # refused before any EM iteration
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]  # no output, no checkpoint


@pytest.mark.slow  # four CLI runs (on the session's cluster, not an embedded one each)
def test_predict_rerun_of_the_same_job_is_exit_0(lake, tmp_path, scheduler_address):
    d, X = lake
    model_dir = str(tmp_path / "model")
    GaussianMixture(3, random_state=0).fit(
        pd.DataFrame(X, columns=["a", "b"])).save(model_dir)
    at = {"address": scheduler_address}
    args = ["predict", model_dir, d, "--columns", "a,b", "--id-column", "id",
            "-o", tmp_path / "pred"]
    first = run_cli(*args, **at)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, **at)
    assert second.returncode == 0, second.stderr
    assert "already published by this prediction job" in second.stdout + second.stderr
    other = run_cli(*args, "--probabilities", **at)  # another job, same output
    assert other.returncode == 2 and "--overwrite" in other.stderr
    clash = run_cli(*args[:-2], "--passthrough", "prob_1", "-o", tmp_path / "p2", **at)
    assert clash.returncode == 2 and "['prob_1'] clash" in clash.stderr
    assert not (tmp_path / "p2").exists()
    got = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").sort_values("id")
    want = GaussianMixture(3, random_state=0).fit(X).predict(X)
    np.testing.assert_array_equal(got["label"], want)


def test_predict_rerun_identity_ignores_where_the_lease_and_checkpoint_live():
    """--lease-wait and --checkpoint-dir change no result: a rerun with other values is
    still the same prediction job (exit 0, not 'already exists')."""
    from distgmm import GaussianMixture
    from distgmm.jobs.rerun import predict_fingerprint
    from distgmm.jobs.spec import OutputSpec

    X = np.random.default_rng(0).normal(size=(200, 2))
    gm = GaussianMixture(2, random_state=0).fit(X)
    a = OutputSpec(path="/lake/out")
    b = OutputSpec(path="/lake/out", lease_wait=5.0, checkpoint_dir="/tmp/ckpt")
    c = OutputSpec(path="/lake/out", probabilities=True)
    fp = [predict_fingerprint(gm, "/lake/in", {}, o) for o in (a, b, c)]
    assert fp[0] == fp[1] and fp[0] != fp[2]
