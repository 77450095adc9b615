"""Generating data from a fitted mixture (issue 15 part 3): `sample_mixture`,
`distgmm sample`.

Rows are drawn per chunk on the cluster from per-logical-block seeds; the oracle for
their distribution is the model itself (mixture mean and covariance, per-component
means, weights), checked within 5 standard errors estimated from the sample.
"""

import math
import pickle

import dask
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from conftest import blobs
from test_catalogue import invoke

from distgmm import GaussianMixture
from distgmm.jobs.sample import sample_job
from distgmm.numerics.sampling import BLOCK_ROWS, sample_rows, sampling_plan
from distgmm.options import COVARIANCE_TYPES
from distgmm.parallel.sample import sample_mixture

Z = 5.0  # standard errors allowed: a false failure has probability < 1e-6 per value


@pytest.fixture(scope="module")
def models():
    X = blobs(n=3000, d=3, k=3, seed=2)[0]
    return {ct: GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
            for ct in COVARIANCE_TYPES}


def _mixture_moments(gm):
    """Mean and covariance of the mixture: sum_k w_k (Sigma_k + mu_k mu_k^T) - mu mu^T."""
    w, mu = gm.weights_, gm.means_
    d = mu.shape[1]
    cov = {"full": gm.covariances_, "tied": np.broadcast_to(gm.covariances_, (len(w), d, d)),
           "diag": np.stack([np.diag(c) for c in np.atleast_2d(gm.covariances_)]),
           "spherical": np.stack([c * np.eye(d) for c in np.atleast_1d(gm.covariances_)])
           }[gm.covariance_type]
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    return mean, second - np.outer(mean, mean), cov


def _assert_moments(x, mean, cov):
    n = len(x)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(axis=0) - mean) < Z * se_mean), (x.mean(axis=0), mean)
    xc = x - x.mean(axis=0)
    products = xc[:, :, None] * xc[:, None, :]
    se_cov = products.std(axis=0) / np.sqrt(n)  # standard error of each covariance entry
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), Z * se_cov + 1e-12)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_rows_have_the_models_moments_and_components(models, ct):
    gm = models[ct]
    X, comp = dask.compute(*sample_mixture(gm, 300_000, random_state=1, chunk_rows=70_000),
                           scheduler="threads")
    assert X.shape == (300_000, 3) and comp.dtype == np.int32
    mean, cov, per_component = _mixture_moments(gm)
    _assert_moments(X, mean, cov)
    share = np.bincount(comp, minlength=3) / len(comp)
    se = np.sqrt(gm.weights_ * (1 - gm.weights_) / len(comp))
    assert np.all(np.abs(share - gm.weights_) < Z * se)
    for k in range(3):  # the component column says which Gaussian drew the row
        _assert_moments(X[comp == k], gm.means_[k], per_component[k])


def test_same_seed_same_rows_whatever_the_chunking(client, models):
    gm = models["full"]
    a = dask.compute(*sample_mixture(gm, 250_000, random_state=7, chunk_rows=100_000))
    b = dask.compute(*sample_mixture(gm, 250_000, random_state=7, chunk_rows=31_111))
    c = dask.compute(*sample_mixture(gm, 250_000, random_state=8, chunk_rows=100_000))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # a smaller sample is the first rows of a larger one
    small = dask.compute(*sample_mixture(gm, 1000, random_state=7, chunk_rows=300))
    np.testing.assert_array_equal(small[0], a[0][:1000])


def test_rows_are_numbered_blocks_not_chunks():
    plan = sampling_plan([0.3, 0.7], [[0.0, 0.0], [5.0, 5.0]], [[1.0, 2.0], [0.5, 0.5]], "diag")
    whole = sample_rows(plan, 3, 0, 3 * BLOCK_ROWS)
    for start, stop in [(0, 1), (BLOCK_ROWS - 5, BLOCK_ROWS + 5), (12345, 2 * BLOCK_ROWS + 1)]:
        part = sample_rows(plan, 3, start, stop)
        np.testing.assert_array_equal(part[0], whole[0][start:stop])
        np.testing.assert_array_equal(part[1], whole[1][start:stop])


def test_the_graph_is_one_independent_task_per_chunk_and_nothing_big_comes_back(
        client, models, tmp_path):
    from distgmm.io.samples import sample_writes

    n, rows = 1_000_000, 65_536
    X, comp = sample_mixture(models["diag"], n, random_state=0, chunk_rows=rows)
    assert X.numblocks[0] == math.ceil(n / rows) and max(X.chunks[0]) == rows
    graph = X.__dask_graph__()
    (source,) = [name for name, deps in graph.dependencies.items() if not deps]
    assert len(graph.layers[source]) == X.numblocks[0]  # one generator task per chunk
    writes = sample_writes(X, comp, str(tmp_path / "s.zarr"), "zarr")
    results = client.gather(client.compute(writes))
    assert len(pickle.dumps(results)) < 10_000  # the driver gets no rows back
    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["X"].shape == (n, 3)


@pytest.mark.parametrize("ct", ["spherical", "tied"])
def test_sample_job_writes_zarr_and_parquet_with_the_same_rows(client, models, tmp_path, ct):
    gm = models[ct]
    gm.save(str(tmp_path / "m"))
    want = dask.compute(*sample_mixture(gm, 50_000, random_state=3, chunk_rows=9999))
    zs = sample_job(str(tmp_path / "m"), 50_000, str(tmp_path / "s.zarr"), random_state=3,
                    component=True, chunk_rows=20_000, client=client)
    ps = sample_job(str(tmp_path / "m"), 50_000, str(tmp_path / "s.parquet"), random_state=3,
                    component=True, chunk_rows=15_000, client=client)
    assert (zs["n_chunks"], ps["n_chunks"]) == (3, 4)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    np.testing.assert_array_equal(g["X"][:], want[0])
    np.testing.assert_array_equal(g["component"][:], want[1])
    assert g["X"].chunks == (20_000, 3) and g.attrs["random_state"] == 3
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column_names == ["x0", "x1", "x2", "component"]
    np.testing.assert_array_equal(np.column_stack(
        [table[c].to_numpy() for c in ("x0", "x1", "x2")]), want[0])
    np.testing.assert_array_equal(table["component"].to_numpy(), want[1])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # staging renamed into place
    with pytest.raises(FileExistsError, match="already exists: pass --overwrite"):
        sample_job(str(tmp_path / "m"), 10, str(tmp_path / "s.zarr"), client=client)


def test_parquet_columns_are_the_models_feature_names(client, tmp_path):
    import pandas as pd

    X = pd.DataFrame(blobs(n=800, d=2, k=2, seed=3)[0], columns=["speed", "load"])
    GaussianMixture(2, random_state=0).fit(X).save(str(tmp_path / "m"))
    sample_job(str(tmp_path / "m"), 1000, str(tmp_path / "s.parquet"), client=client)
    assert pq.read_table(tmp_path / "s.parquet").column_names == ["speed", "load"]


def test_the_command_line(models, tmp_path, scheduler_address):
    models["full"].save(str(tmp_path / "m"))
    out = tmp_path / "cli.parquet"
    code, err = invoke(["sample", tmp_path / "m", "-n", 30_000, "--output", out,
                        "--random-state", 4, "--component", "--chunk-rows", 7000, "--quiet",
                        "--address", scheduler_address])
    assert code == 0, err
    want = dask.compute(*sample_mixture(models["full"], 30_000, random_state=4),
                        scheduler="sync")
    table = pq.read_table(out)
    np.testing.assert_array_equal(table["component"].to_numpy(), want[1])
    np.testing.assert_array_equal(table["x2"].to_numpy(), want[0][:, 2])


@pytest.mark.parametrize("n, chunk_rows, seed, match", [
    (0, None, 0, "n_samples=0"), (10, 0, 0, "chunk_rows=0"), (10, None, -1, "random_state=-1"),
    (2.5, None, 0, "n_samples=2.5")])
def test_bad_arguments_are_refused(models, n, chunk_rows, seed, match):
    with pytest.raises(ValueError, match=match):
        sample_mixture(models["diag"], n, random_state=seed, chunk_rows=chunk_rows)


def test_a_model_without_covariances_cannot_be_sampled():
    with pytest.raises(ValueError, match="has no weights_, means_, covariances_: fit it"):
        sample_mixture(GaussianMixture(2), 10)


@pytest.mark.slow
def test_the_memory_benchmark_runs(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sample_memory.py"
    spec = importlib.util.spec_from_file_location("bench_sample_memory", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r"
    assert bench.main(["--rows", "3000", "--format", "parquet", "--out", str(out)]) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    assert row["n"] == 3000 and row["driver_peak_mib"] >= row["driver_before_mib"] > 0
    assert "| 3,000 | parquet |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_ten_million_rows_match_the_model_within_sampling_error(models):
    """The acceptance size: moments of 1e7 rows, reduced chunk by chunk (dask threads).

    Centred at the model's mean, E[(x - mu)(x - mu)^T] is the model's covariance
    exactly, so each entry's standard error is std((x_i - mu_i)(x_j - mu_j)) / sqrt(n).
    """
    gm = models["full"]
    mean, cov, _ = _mixture_moments(gm)
    n = 10_000_000
    X, _ = sample_mixture(gm, n, random_state=9, chunk_rows=1 << 20)
    Xc = X - mean
    P = Xc[:, :, None] * Xc[:, None, :]
    m1, m2, m4 = dask.compute(Xc.mean(axis=0), P.mean(axis=0), (P ** 2).mean(axis=0),
                              scheduler="threads")
    assert np.all(np.abs(m1) < Z * np.sqrt(np.diag(cov) / n))
    se = np.sqrt((m4 - m2 ** 2) / n)
    np.testing.assert_array_less(np.abs(m2 - cov), Z * se)
