"""The main job for a newcomer: fit a synthetic mixture on an embedded Dask cluster.

Run ``python -m distgmm.demo``. With no ``DASK_SCHEDULER_ADDRESS`` set, ``Client()``
starts a ``LocalCluster`` bound to localhost; with it set (or ``--address``), the same
job runs on that cluster.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic(n_samples: int, n_features: int, n_components: int, chunk_rows: int, seed: int):
    """A lazily generated dask array of well-separated Gaussian blobs, and the true means."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=8.0, size=(n_components, n_features))
    state = da.random.RandomState(seed)
    labels = state.randint(0, n_components, size=n_samples, chunks=chunk_rows)
    noise = state.standard_normal((n_samples, n_features), chunks=(chunk_rows, n_features))
    X = noise + da.from_array(means)[labels]
    return X, means


def main(argv: list[str] | None = None) -> int:
    """Generate data, fit, print one line per iteration and a summary."""
    from distributed import Client

    from distgmm import GaussianMixture

    p = argparse.ArgumentParser(prog="python -m distgmm.demo", description=__doc__)
    p.add_argument("--address", help="scheduler address (default: an embedded LocalCluster)")
    p.add_argument("--n-samples", type=int, default=1_000_000)
    p.add_argument("--n-features", type=int, default=8)
    p.add_argument("-k", "--n-components", type=int, default=5)
    p.add_argument("--covariance-type", default="full")
    p.add_argument("--random-state", type=int, default=0)
    args = p.parse_args(argv)

    with Client(args.address) as client:
        print(f"dask dashboard: {client.dashboard_link}")
        X, true_means = synthetic(
            args.n_samples, args.n_features, args.n_components, 125_000, args.random_state
        )
        gm = GaussianMixture(
            args.n_components, covariance_type=args.covariance_type,
            random_state=args.random_state, verbose=2, verbose_interval=1,
        )
        t0 = time.perf_counter()
        gm.fit(X)
        seconds = time.perf_counter() - t0
        match = [np.min(np.linalg.norm(gm.means_ - m, axis=1)) for m in true_means]
        print(f"fitted {args.n_samples} x {args.n_features} rows, k={args.n_components}, "
              f"{args.covariance_type}: {gm.n_iter_} iterations in {seconds:.1f} s, "
              f"converged={gm.converged_}, mean log-likelihood {gm.lower_bound_:.4f}")
        print("weights:", np.round(np.sort(gm.weights_), 3))
        print(f"largest distance from a true mean to a fitted mean: {max(match):.3f}")
        print("label counts:", np.bincount(gm.predict(X).compute(), minlength=gm.n_components))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
