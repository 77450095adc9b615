"""Seconds per EM iteration: distgmm vs scikit-learn, side by side in one run.

Same generated data, same initial parameters, tol=0 and fixed iteration counts. The time
per iteration is the difference between a fit of ``n2`` and one of ``n1`` iterations,
divided by ``n2 - n1``, so set-up, initialisation and final steps cancel out.

distgmm runs twice: in process on a numpy array, and on a ``LocalCluster`` of two
single-threaded worker processes with the data persisted (as a user would start one).

Usage::

    python benchmarks/compare.py --case smoke          # seconds, for CI
    python benchmarks/compare.py --case A --case B --out results/compare
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

CASES = {  # n_samples, n_features, n_components
    "smoke": (20_000, 4, 3),
    "A": (1_000_000, 16, 8),
    "B": (200_000, 50, 10),
}
TYPES = ("full", "tied", "diag", "spherical")


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return X, X[rng.choice(n, k, replace=False)]


def start(X, means, ct):
    """Initial parameters for both libraries: given means, unit weights, 1 sklearn step."""
    from sklearn.mixture import GaussianMixture as SK

    k = len(means)
    w = np.full(k, 1.0 / k)
    sub = X[:: max(1, len(X) // 20000)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = SK(k, covariance_type=ct, max_iter=1, weights_init=w, means_init=means).fit(sub)
    return dict(weights_init=w, means_init=means, precisions_init=p.precisions_)


def per_iteration(cls, k, kw, X, n1, n2):
    def timed(n):
        model = cls(k, max_iter=n, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            model.fit(X)
            return time.perf_counter() - t0

    return max(timed(n2) - timed(n1), 1e-9) / (n2 - n1)


def run(case, n1, n2, client):
    import dask
    import dask.array as da
    from sklearn.mixture import GaussianMixture as SK

    from distgmm import GaussianMixture

    n, d, k = CASES[case]
    X, means = make_data(n, d, k)
    chunk = max(1, n // 16)
    Xd = client.persist(da.from_array(X, chunks=(chunk, d)))
    rows = []
    for ct in TYPES:
        kw = dict(covariance_type=ct, tol=0, **start(X, means, ct))
        sk = per_iteration(SK, k, kw, X, n1, n2)
        with client.as_current():
            dist = per_iteration(GaussianMixture, k, kw, Xd, n1, n2)
        with dask.config.set(scheduler="threads"):
            local = per_iteration(GaussianMixture, k, kw, X, n1, n2)
        rows.append(dict(case=case, covariance_type=ct, n=n, d=d, k=k, sklearn=sk,
                         distgmm_numpy=local, distgmm_distributed=dist))
        print(f"{case} {ct:9s} sklearn {sk:.4f}s  distgmm numpy {local:.4f}s "
              f"({sk / local:.2f}x)  distributed {dist:.4f}s ({sk / dist:.2f}x)", flush=True)
    return rows


def markdown(rows):
    lines = ["| case | type | scikit-learn s/it | distgmm numpy s/it | ratio | "
             "distgmm distributed 2x1 s/it | ratio |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['covariance_type']} | {r['sklearn']:.4f} | "
            f"{r['distgmm_numpy']:.4f} | {r['sklearn'] / r['distgmm_numpy']:.2f}x | "
            f"{r['distgmm_distributed']:.4f} | {r['sklearn'] / r['distgmm_distributed']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES))
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    with cluster, Client(cluster, set_as_default=False) as c:
        rows = [r for case in (args.case or ["smoke"]) for r in run(case, args.n1, args.n2, c)]
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
