"""The newcomer's job: write a synthetic Zarr dataset, then cluster it end to end.

``distgmm demo`` writes ``WORKDIR/data.zarr`` (Gaussian blobs, true means in its
attributes) and publishes ``WORKDIR/output`` (model, metrics, labels) using the
embedded local cluster, or the scheduler at ``--address``.
"""

from __future__ import annotations

import os

import numpy as np

from .events import Reporter

CHUNK_ROWS = 125_000


def synthetic(n_samples: int, n_features: int, n_components: int, chunk_rows: int, seed: int):
    """A lazily generated dask array of well-separated Gaussian blobs, and the true means."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=8.0, size=(n_components, n_features))
    state = da.random.RandomState(seed)
    labels = state.randint(0, n_components, size=n_samples, chunks=chunk_rows)
    noise = state.standard_normal((n_samples, n_features), chunks=(chunk_rows, n_features))
    return noise + da.from_array(means)[labels], means


def make_demo_data(url: str, n_samples: int, n_features: int, n_components: int,
                   seed: int, chunk_rows: int = CHUNK_ROWS) -> None:
    """Write the synthetic blobs to a Zarr array at ``url`` (replacing what is there)."""
    import dask.array as da
    import zarr

    from ..io.publish import Publication

    X, means = synthetic(n_samples, n_features, n_components, chunk_rows, seed)
    with Publication(url, overwrite=True, marker=False) as pub:
        z = zarr.create_array(store=pub.staging_url, shape=X.shape, dtype="float64",
                              chunks=(chunk_rows, n_features))
        z.attrs.update({"true_means": means.tolist(),
                        "feature_names": [f"x{j}" for j in range(n_features)],
                        "generator": {"n_samples": n_samples, "n_components": n_components,
                                      "seed": seed}})
        da.store(X, z, lock=False)


def _is_current(url: str, n_samples: int, n_features: int, n_components: int,
                seed: int) -> bool:
    import zarr

    if not os.path.exists(url):
        return False
    try:
        z = zarr.open_array(url, mode="r")
    except (FileNotFoundError, ValueError, KeyError):
        return False
    gen = z.attrs.get("generator", {})
    return z.shape == (n_samples, n_features) and gen == {
        "n_samples": n_samples, "n_components": n_components, "seed": seed}


def run_demo(*, workdir: str, n_samples: int, n_features: int, n_components: int,
             covariance_type: str, random_state: int, address=None, n_workers=None,
             threads_per_worker=None, memory_limit=None, reporter: Reporter | None = None
             ) -> dict:
    """Generate (or reuse) the demo data, fit, publish, and print how close the fit is.

    Returns
    -------
    dict
        The run's metrics.
    """
    from ..estimator import load_model
    from .cluster import connect
    from .pipeline import run_job
    from .spec import JobSpec

    reporter = reporter or Reporter()
    data = os.path.join(workdir, "data.zarr")
    output = os.path.join(workdir, "output")
    spec = JobSpec.from_mapping({
        "name": "demo",
        "input": {"path": data},
        "model": {"n_components": n_components, "covariance_type": covariance_type,
                  "random_state": random_state},
        "output": {"path": output, "overwrite": True},
    }, where="distgmm demo")
    with connect(address, n_workers=n_workers, threads_per_worker=threads_per_worker,
                 memory_limit=memory_limit, reporter=reporter) as client:
        if _is_current(data, n_samples, n_features, n_components, random_state):
            reporter.event("data", f"reusing {data}", path=data)
        else:
            reporter.event("data", f"writing {n_samples} x {n_features} synthetic rows "
                           f"({n_components} blobs) to {data}", path=data)
            os.makedirs(workdir, exist_ok=True)
            make_demo_data(data, n_samples, n_features, n_components, random_state)
        metrics = run_job(spec, reporter=reporter, client=client)
    import zarr

    true_means = np.asarray(zarr.open_array(data, mode="r").attrs["true_means"])
    fitted = load_model(os.path.join(output, "model")).means_
    worst = max(np.min(np.linalg.norm(fitted - m, axis=1)) for m in true_means)
    reporter.event("demo", f"largest distance from a true mean to a fitted mean: {worst:.3f}; "
                   f"outputs in {output}", worst_mean_distance=float(worst), output=output)
    return metrics
