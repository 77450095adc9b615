"""Acceptance: an xarray-written (time, depth, y, x) cube clustered by the CLI, v2 and v3."""

import json

import numpy as np
import pytest
import xarray as xr
from conftest import invoke_main, run_cli
from test_gridded_api import _hand_rows, _ocean

from distgmm import GaussianMixture, load_model
from distgmm.io.sources import GriddedSource

FIT = ("-k", "2", "--init", "kmeans", "--random-state", "3", "--tol", "0",
       "--max-iter", "15")


def _write(tmp_path, fmt, chunks):
    ds = _ocean(seed=fmt)
    path = tmp_path / f"cube{fmt}.zarr"
    ds.chunk(chunks).to_zarr(path, zarr_format=fmt, consolidated=(fmt == 2))
    return ds, str(path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("fmt, chunks", [
    (2, {"time": 1, "y": 4, "x": 5, "depth": 2}),  # small spatial chunks, depth split too
    (3, {"time": 2, "y": 10, "x": 6}),
])
def test_cube_equals_the_hand_built_profiles(tmp_path, fmt, chunks, scheduler_address):
    # on the session's cluster: an embedded one per command cost ~2 s each
    ds, path = _write(tmp_path, fmt, chunks)
    out = tmp_path / "out"
    report = ("--report",) if fmt == 3 else ()
    r = run_cli("fit", path, "--variables", "temp,salt", "--feature-dim", "depth",
                "--missing", "omit", "--probabilities", "--log-likelihood", "-o", str(out),
                *report, *FIT, address=scheduler_address)
    assert r.returncode == 0, r.stderr
    X, keep = _hand_rows(ds)
    # the same start: the CLI's initialiser on the same rows, without an EM iteration
    src = GriddedSource(path, ("temp", "salt"), "depth").load()
    start = GaussianMixture(2, init_params="kmeans", random_state=3,
                            missing="omit", max_iter=0).fit(src.X)
    ref = GaussianMixture(2, tol=0, max_iter=15, weights_init=start.weights_,
                          means_init=start.means_, precisions_init=start.precisions_
                          ).fit(X[keep])
    model = load_model(str(out))
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(model, attr), getattr(ref, attr), rtol=1e-10,
                                   atol=1e-12, err_msg=attr)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_omitted"] == (~keep).sum()
    assert metrics["feature_names"][:2] == ["temp_0.0", "temp_100.0"]

    pred = xr.open_zarr(out / "predictions.zarr")
    assert pred["label"].dims == ("time", "y", "x") and pred["label"].dtype == np.int32
    hand = np.full(len(X), -1)
    hand[keep] = ref.predict(X[keep])
    np.testing.assert_array_equal(pred["label"].values, hand.reshape(pred["label"].shape))
    land = np.isnan(ds["temp"].isel(depth=0).values)
    assert (pred["label"].values[land] == -1).all() and (pred["label"].values[~land] >= 0).all()
    want = np.full((len(X), 2), np.nan)
    want[keep] = ref.predict_proba(X[keep])
    np.testing.assert_allclose(pred["probabilities"].values, want.reshape(3, 10, 12, 2),
                               rtol=1e-8, atol=1e-12)
    assert np.isnan(pred["log_likelihood"].values[land]).all()
    # the input's coordinates and attributes, chunks like its sample chunks, CF attributes
    for c in ("time", "y", "x", "lat"):
        xr.testing.assert_equal(pred[c].reset_coords(drop=True),
                                ds[c].reset_coords(drop=True))
    assert pred.attrs["title"] == "synthetic ocean"
    src_chunks = xr.open_zarr(path)["temp"].chunks
    assert pred["label"].chunks == (src_chunks[0], src_chunks[2], src_chunks[3])
    assert pred["label"].attrs["flag_values"] == [-1, 0, 1]
    assert "long_name" in pred["log_likelihood"].attrs
    assert np.isnan(pred["log_likelihood"].encoding["_FillValue"])
    if report:
        _check_report_and_predict(out, path, tmp_path, pred, scheduler_address)


def _check_report_and_predict(out, path, tmp_path, pred, address):
    from PIL import Image

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"report/label_map.png", "report/profiles.png"} <= set(metrics["report"])
    for name in ("label_map", "profiles"):
        assert Image.open(out / "report" / f"{name}.png").size[0] > 300
    # the saved model labels the same cube again, through the same gridded writer
    r = run_cli("predict", str(out), path, "--variables", "temp,salt", "--feature-dim",
                "depth", "-o", str(tmp_path / "again"), address=address)
    assert r.returncode == 0, r.stderr
    again = xr.open_zarr(tmp_path / "again" / "predictions.zarr")
    np.testing.assert_array_equal(again["label"].values, pred["label"].values)
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["n_omitted"] == \
        metrics["n_omitted"]


def _bad_store(tmp_path):
    ds = _ocean()
    ds["mask"] = (("y", "x"), np.ones((10, 12)))
    ds["name"] = (("y", "x"), np.full((10, 12), "sea"))
    path = tmp_path / "bad.zarr"
    ds.to_zarr(path, zarr_format=2)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--variables", "temp,oxygen", "--feature-dim", "depth"), "No variable(s) ['oxygen']"),
    (("--variables", "temp", "--feature-dim", "level"), "No dimension 'level'"),
    (("--variables", "temp,mask", "--feature-dim", "depth"), "have different dimensions"),
    (("--variables", "mask,name"), "'name' has dtype"),
    (("--variables", "temp,salt", "--feature-dim", "depth"), "non-finite"),  # --missing error
    (("--variables", "temp", "--feature-dim", "depth", "--array", "temp", "--feature-axis",
      "1"), "--feature-axis applies to a lone array"),
    (("--variables", "temp,salt", "--feature-dim", "depth", "--missing", "omit",
      "--output-format", "parquet"), "drop --output-format parquet"),
])
def test_bad_gridded_input_exits_2(tmp_path, args, message, scheduler_address):
    # in this process (conftest.invoke_main) on the session's cluster: a command per case
    # cost a Python start and an embedded cluster (~3-5 s), and what is checked here (the
    # exit code, the distgmm error line, no output, no iteration) is what main() says
    path = _bad_store(tmp_path)
    code, err = invoke_main(["fit", path, "-k", "2", *args, "-o", str(tmp_path / "out"),
                             "--address", scheduler_address])
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("distgmm: error")]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out").exists()
    assert "iteration" not in err  # refused before any fitting


@pytest.mark.slow
def test_all_land_exits_2(tmp_path, scheduler_address):
    ds = _ocean()
    ds["temp"][:] = np.nan
    ds.to_zarr(tmp_path / "land.zarr", zarr_format=3)
    code, err = invoke_main(["fit", str(tmp_path / "land.zarr"), "-k", "2", "--variables",
                             "temp", "--feature-dim", "depth", "--missing", "omit", "-o",
                             str(tmp_path / "out"), "--address", scheduler_address])
    assert code == 2, err
    assert "360 of 360 rows that hold missing values, 0 rows remain" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_example_ocean_job(tmp_path, scheduler_address):
    from pathlib import Path

    from distgmm.jobs.ocean import ocean_cube, write_ocean_cube

    jobs = Path(__file__).resolve().parent.parent / "jobs"
    (tmp_path / "distgmm-demo").mkdir()
    write_ocean_cube(str(tmp_path / "distgmm-demo" / "ocean.zarr"))
    r = run_cli("run", str(jobs / "gridded-ocean.yaml"), cwd=tmp_path,
                address=scheduler_address)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "distgmm-demo" / "ocean-output"
    pred = xr.open_zarr(out / "predictions.zarr")
    ds = ocean_cube()
    land = np.isnan(ds["temp"].isel(depth=0).values)
    labels = pred["label"].values
    assert (labels[land] == -1).all()
    # three water masses, recovered up to the components' order
    yy, xx = np.meshgrid(ds.lat.values, ds.lon.values, indexing="ij")
    truth = np.where(yy > 10, 0, np.where(xx > 30, 2, 1))
    truth = np.broadcast_to(truth, labels.shape)[~land]
    found = labels[~land]
    pairs = {(t, f) for t, f in zip(truth, found)}
    assert len(pairs) == 3 and len({f for _, f in pairs}) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_omitted"] == land.sum() and "report/profiles.png" in metrics["report"]


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gridded.py"
    spec = importlib.util.spec_from_file_location("bench_gridded", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gridded"
    assert bench.main(["--time", "2", "--depth", "3", "--ny", "20", "--nx", "20", "--chunk",
                       "10", "--iters", "3", "--repeats", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["cache"] for r in rows] == ["none", "memory"]
    assert all(r["gridded_s"] > 0 and r["flat_s"] > 0 and r["rows"] == 800 for r in rows)
