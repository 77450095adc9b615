"""A sweep of candidates in shared passes vs the same fits one after another.

Out of core: the data is a Zarr array on disk, re-read on every pass (``cache="none"``),
on a ``LocalCluster`` of two single-threaded worker processes. Both sides fit the same
candidates with the same settings (``max_iter`` fixed, ``tol=0``, so both make the same
EM iterations) and score every candidate (BIC); the sweep is ``select_model``, the
reference is ``GaussianMixture(k, ...).fit(X)`` + ``bic(X)`` per candidate.

Usage::

    python benchmarks/sweep.py                       # 10 candidates, k = 1..10
    python benchmarks/sweep.py --rows 200000 --out results/sweep
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_zarr(path: str, n: int, d: int, k: int, chunk: int) -> None:
    import zarr

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=5.0, size=(k, d))
    z = zarr.create_array(store=path, shape=(n, d), chunks=(chunk, d), dtype="f8")
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z[start:start + m] = centers[rng.integers(0, k, m)] + rng.normal(size=(m, d))


def main(argv=None) -> int:
    import dask.array as da
    from distributed import Client, LocalCluster
    from sklearn.exceptions import ConvergenceWarning

    from distgmm import GaussianMixture, select_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--true-k", type=int, default=5)
    p.add_argument("--max-k", type=int, default=10)
    p.add_argument("--max-iter", type=int, default=10)
    p.add_argument("--covariance-type", default="full")
    p.add_argument("--init", default="kmeans")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    ks = list(range(1, args.max_k + 1))
    kw = dict(covariance_type=args.covariance_type, tol=0, max_iter=args.max_iter,
              init_params=args.init, random_state=0, cache="none")
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None) as cluster, Client(cluster):
        path = str(Path(tmp) / "x.zarr")
        write_zarr(path, args.rows, args.features, args.true_k, 125_000)
        X = da.from_zarr(path)
        t0 = time.perf_counter()
        t_read = time.perf_counter()
        X.sum().compute()
        t_read = time.perf_counter() - t_read
        t0 = time.perf_counter()
        best, table = select_model(X, ks, args.covariance_type, **{
            k: v for k, v in kw.items() if k != "covariance_type"})
        t_sweep = time.perf_counter() - t0
        t0 = time.perf_counter()
        bics = []
        for k in ks:
            gm = GaussianMixture(k, **kw).fit(X)
            bics.append(gm.bic(X))
        t_separate = time.perf_counter() - t0
    same = np.allclose(table.bic.to_numpy(), bics, rtol=1e-10)
    result = {
        "rows": args.rows, "features": args.features, "candidates": len(ks),
        "covariance_type": args.covariance_type, "max_iter": args.max_iter,
        "init": args.init, "read_pass_s": t_read, "sweep_s": t_sweep,
        "separate_s": t_separate, "ratio": t_sweep / t_separate,
        "sweep_passes": int(table.attrs["passes"]), "bic_equal_rtol_1e-10": bool(same),
        "chosen_k": int(best.n_components),
    }
    md = ("| candidates | type | rows x features | raw read pass s | sweep s (passes) | "
          "10 separate fits s | ratio | same BICs |\n|---|---|---|---|---|---|---|---|\n"
          f"| k=1..{args.max_k} | {args.covariance_type} | {args.rows} x {args.features} | "
          f"{t_read:.2f} | {t_sweep:.1f} ({result['sweep_passes']}) | {t_separate:.1f} | "
          f"{result['ratio']:.2f}x | {same} |\n")
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        Path(args.out + ".md").write_text(md)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
