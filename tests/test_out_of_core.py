"""Out of core: a Zarr input three times the workers' total memory, re-read every
iteration (cache="none"), fits without worker restarts and without spilling."""

import json

import numpy as np
import pytest
import zarr
from conftest import DaskCLICluster, run_cli

from distgmm import load_model

ROWS, COLS, CHUNK = 22_200_000, 8, 200_000     # 1.42 GB of float64
# one worker (two threads): a worker with distgmm's libraries imported idles at ~210 MB
MEMORY_LIMIT = "448MiB"


@pytest.fixture(scope="module")
def big_zarr(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "x.zarr"
    # uncompressed: zstd kept 96 % of these random floats' bytes and cost ~8 s of
    # writing and decoding; each pass still reads all 1.42 GB
    z = zarr.create_array(store=str(path), shape=(ROWS, COLS), chunks=(CHUNK, COLS),
                          dtype="f8", compressors=None)
    centers = np.array([[0.0] * COLS, [6.0] * COLS, [-6.0] * COLS])
    for i, start in enumerate(range(0, ROWS, CHUNK)):
        rng = np.random.default_rng(i)
        z[start:start + CHUNK] = centers[rng.integers(0, 3, CHUNK)] + rng.normal(
            size=(CHUNK, COLS))
    return str(path)


def test_fit_larger_than_cluster_memory(big_zarr, tmp_path):
    assert ROWS * COLS * 8 >= 3 * 448 * 2**20
    cluster = DaskCLICluster(tmp_path, n_workers=1, nthreads=2,
                             memory_limit=MEMORY_LIMIT).start()
    try:
        before = cluster.worker_pids()
        out = tmp_path / "out"
        r = run_cli("fit", big_zarr, "-k", 3, "--covariance-type", "diag", "--output", out,
                    "--cache", "none", "--init", "random_from_data", "--tol", 0,
                    "--max-iter", 2, "--chunk-size", "16MiB", "--no-labels",
                    "--log-format", "json", address=cluster.address, timeout=300)
        assert r.returncode == 0, r.stderr
        after = cluster.worker_pids()
        assert after == before, "a worker was restarted"
        from distributed import Client

        with Client(cluster.address) as c:
            spilled = c.run(lambda dask_worker: dask_worker.data.spilled_total.disk)
            assert sum(spilled.values()) == 0, "workers spilled to disk"
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_samples"] == ROWS and len(metrics["timings"]["iterations"]) == 2
        model = load_model(str(out))
        np.testing.assert_allclose(np.sort(model.means_[:, 0]), [-6, 0, 6], atol=0.05)
    finally:
        cluster.stop()
