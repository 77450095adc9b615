"""Anomaly detection by density (issue 15 part 2): the exact threshold pass, its
storage in model files and metrics, and the outlier column of predictions.

The threshold is exact: the ``m = ceil(fraction * N)``-th smallest log-density, so on
the rows it was computed from exactly ``m`` rows are flagged (no ties in continuous
data), i.e. the flagged fraction is within 1/N of the one asked for. The oracle is
``numpy.sort`` of the per-row log-densities and scikit-learn's ``score_samples``.
"""

import json
import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import blobs
from sklearn.exceptions import NotFittedError

from distgmm import GaussianMixture, JobSpec, load_model, predict_job, run_job
from distgmm.jobs.spec import OutputSpec
from distgmm.numerics.outliers import (
    MAX_EXACT_ROWS,
    flagged_rows,
    low_tail,
    merge_low_tails,
    tail_threshold,
)
from distgmm.parallel.outliers import density_threshold
from distgmm.parallel.reduction import tree_combine_local


@pytest.fixture(scope="module")
def model():
    X = blobs(n=3000, d=3, k=3, seed=11)[0]
    return GaussianMixture(3, random_state=0).fit(X)


@pytest.fixture(scope="module")
def big(model):
    """1e6 rows drawn from the model's own shape, plus a few far-away ones."""
    rng = np.random.default_rng(5)
    X, _ = model.sample(1_000_000)
    X[rng.choice(len(X), 50, replace=False)] += 40.0
    return X


@pytest.mark.parametrize("fraction, n, m", [
    (0.01, 1_000_000, 10_000), (0.07, 100, 7), (0.001, 10, 1), (0.499, 3, 2), (0.25, 7, 2)])
def test_flagged_rows_is_the_ceiling(fraction, n, m):
    assert flagged_rows(fraction, n) == m == max(1, math.ceil(round(fraction * n, 6)))


@pytest.mark.parametrize("bad", [0, 0.5, -0.1, 1.0, float("nan"), "x", None])
def test_a_fraction_outside_the_open_interval_is_refused(bad):
    with pytest.raises(ValueError, match=r"not between 0.0 and 0.5 \(exclusive\)"):
        flagged_rows(bad, 1000)


def test_above_the_memory_cap_the_exact_pass_refuses_and_says_what_fits():
    n = 10 * MAX_EXACT_ROWS
    with pytest.raises(ValueError, match=r"at most 0.1 for this data"):
        flagged_rows(0.2, n)
    assert flagged_rows(0.1, n) == MAX_EXACT_ROWS


def test_low_tails_merge_to_the_exact_order_statistic_in_any_tree():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(50_000)
    for m in (1, 17, 4000):
        cuts = np.sort(rng.choice(np.arange(1, values.size), 40, replace=False))
        parts = [low_tail(v, m) for v in np.split(values, cuts)]
        for split_every in (2, 3, 8):
            tail = tree_combine_local(parts, merge_low_tails, split_every)
            assert tail.n == values.size
            np.testing.assert_array_equal(np.sort(tail.values), np.sort(values)[:m])
            assert tail_threshold(tail) == np.sort(values)[m - 1]


@pytest.mark.parametrize("fraction", [0.01, 0.05])
def test_one_million_rows_flag_exactly_the_requested_fraction(model, big, fraction):
    scores = model.to_sklearn().score_samples(big)  # scikit-learn as the oracle
    n = len(big)
    m = math.ceil(fraction * n)
    threshold = density_threshold(model, big, fraction)
    assert threshold == pytest.approx(np.sort(scores)[m - 1], rel=1e-12, abs=1e-12)
    ours = model.score_samples(big)
    assert threshold == np.sort(ours)[m - 1]  # exact on the model's own scores
    flagged = int((ours <= threshold).sum())
    assert flagged == m
    # the stated bound: the flagged fraction is within 1/N of the requested one
    assert abs(flagged / n - fraction) <= 1 / n


def test_dask_input_any_chunking_gives_the_same_threshold(client, model, big):
    X = big[:200_000]
    want = density_threshold(model, X, 0.02)
    for chunks in (50_000, 33_333):
        assert density_threshold(model, da.from_array(X, chunks=(chunks, 3)), 0.02) == want
    assert want == np.sort(model.score_samples(X))[math.ceil(0.02 * len(X)) - 1]


def test_the_estimator_helper_sets_attributes_and_flags_new_rows(tmp_path, model, big):
    gm = load_model(_saved(model, tmp_path / "plain"))
    assert not hasattr(gm, "outlier_threshold_")  # a model file without a threshold
    with pytest.raises(NotFittedError, match="no outlier threshold"):
        gm.is_outlier(big[:10])
    threshold = gm.outlier_threshold(big[:100_000], 0.03)
    assert gm.outlier_threshold_ == threshold and gm.outlier_fraction_ == 0.03
    loaded = load_model(_saved(gm, tmp_path / "flagged"))
    assert loaded.outlier_threshold_ == threshold and loaded.outlier_fraction_ == 0.03
    new = big[500_000:520_000]
    want = model.to_sklearn().score_samples(new) <= threshold
    np.testing.assert_array_equal(loaded.is_outlier(new), want)
    lazy = loaded.is_outlier(da.from_array(new, chunks=(7000, 3)))
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), want)
    meta = json.loads((tmp_path / "flagged" / "model.json").read_text())
    assert meta["outliers"] == {"fraction": 0.03, "threshold": threshold, "method": "exact"}


def test_a_tampered_threshold_is_refused(tmp_path, model):
    from distgmm.io.integrity import content_hash

    gm = load_model(_saved(model, tmp_path / "a"))
    gm.outlier_threshold(blobs(n=3000, d=3, k=3, seed=11)[0], 0.1)
    path = _saved(gm, tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    meta["outliers"]["fraction"] = 0.9
    (tmp_path / "b" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="corrupt model .*content hash does not match"):
        load_model(path)
    meta["sha256"] = content_hash(meta)  # a deliberate edit: caught by the range check
    (tmp_path / "b" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outliers entry .* out of range"):
        load_model(path)


def _saved(gm, path):
    gm.save(str(path))
    return str(path)


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_a_job_flags_its_rows_and_predict_applies_the_saved_threshold(client, tmp_path, fmt):
    X = blobs(n=4000, d=3, k=3, seed=7)[0]
    np.save(tmp_path / "x.npy", X)
    spec = JobSpec.from_mapping({
        "input": {"path": str(tmp_path / "x.npy"), "chunk_rows": 700},
        "model": {"n_components": 3, "outliers": 0.025},
        "output": {"path": str(tmp_path / "out"), "format": fmt, "log_likelihood": True},
    })
    metrics = run_job(spec, client=client)
    model = load_model(str(tmp_path / "out"))
    scores = model.to_sklearn().score_samples(X)
    m = math.ceil(0.025 * len(X))
    assert model.outlier_threshold_ == pytest.approx(np.sort(scores)[m - 1], rel=1e-12)
    flags = _flags(tmp_path / "out", fmt)
    assert flags.sum() == m == metrics["outliers"]["flagged"]
    np.testing.assert_array_equal(np.flatnonzero(flags), np.sort(np.argsort(scores)[:m]))
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["outliers"]["threshold"] == model.outlier_threshold_
    assert on_disk["outliers"]["fraction"] == 0.025 and "outliers" in on_disk["timings"]
    # new data, scored with the saved threshold (not a new quantile of the new data)
    new = X[:1000] * 1.5
    np.save(tmp_path / "new.npy", new)
    scored = predict_job(str(tmp_path / "out"), str(tmp_path / "new.npy"),
                         OutputSpec(path=str(tmp_path / "pred"), format=fmt), client=client)
    want = model.to_sklearn().score_samples(new) <= model.outlier_threshold_
    np.testing.assert_array_equal(_flags(tmp_path / "pred", fmt), want)
    assert scored["outliers"]["flagged"] == want.sum() != round(0.025 * len(new))


def _flags(out, fmt):
    if fmt == "zarr":
        return zarr.open_group(str(out / "predictions.zarr"), mode="r")["outlier"][:]
    return pd.read_parquet(out / "predictions.parquet")["outlier"].to_numpy()


def test_without_outliers_predictions_have_no_outlier_column(client, tmp_path):
    np.save(tmp_path / "x.npy", blobs(n=600, d=2, k=2, seed=1)[0])
    run_job(JobSpec.from_mapping({"input": {"path": str(tmp_path / "x.npy")},
                                  "model": {"n_components": 2},
                                  "output": {"path": str(tmp_path / "o"),
                                             "format": "parquet"}}), client=client)
    assert "outlier" not in pd.read_parquet(tmp_path / "o" / "predictions.parquet").columns
    assert "outliers" not in json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "outliers" not in json.loads((tmp_path / "o" / "model" / "model.json").read_text())


def test_a_refit_forgets_the_threshold_of_the_old_parameters(model):
    X = blobs(n=3000, d=3, k=3, seed=11)[0]
    gm = GaussianMixture(3, random_state=0).fit(X)
    gm.outlier_threshold(X, 0.05)
    gm.fit(X[:2000])
    assert not hasattr(gm, "outlier_threshold_") and not hasattr(gm, "outlier_fraction_")


@pytest.mark.parametrize("as_dask", [False, True])
def test_with_missing_omit_the_threshold_counts_complete_rows_only(as_dask):
    X = blobs(n=1000, d=3, k=3, seed=12)[0]
    X[::10, 1] = np.nan  # 100 rows omitted, 900 complete
    gm = GaussianMixture(3, random_state=0, missing="omit").fit(X)
    data = da.from_array(X, chunks=(130, 3)) if as_dask else X
    threshold = gm.outlier_threshold(data, 0.1)
    complete = X[~np.isnan(X).any(axis=1)]
    scores = np.sort(gm.score_samples(complete))
    assert threshold == scores[89]  # the 90th smallest of 900: ceil(0.1 * 900)
    assert int((gm.score_samples(complete) <= threshold).sum()) == 90
