"""Seconds per EM iteration: distgmm vs scikit-learn, oneDAL and Spark, in one run.

Same generated data and (except Spark, which cannot be given a start) the same initial
parameters; tol=0 and fixed iteration counts. The time per iteration is the difference
between a fit of ``n2`` and one of ``n1`` iterations divided by ``n2 - n1``, so set-up,
initialisation and final steps cancel out.

Systems (optional ones are skipped when not installed; ``pip install -e ".[bench]"``):

- scikit-learn ``GaussianMixture`` in this process (BLAS on every core);
- distgmm on a plain ``LocalCluster(n_workers=2, threads_per_worker=1)``, data persisted
  (float64, and ``compute_dtype="float32"``), and distgmm in this process on a numpy
  array;
- oneDAL ``em_gmm`` through daal4py (full and diag), every core;
- Spark ML ``GaussianMixture`` in ``local[2]`` (full only; Java and pyspark needed);
- a float64 numpy GEMM (2000 x 2000) in this process, for the achieved-rate column.

GFLOP/s for full covariance count ``4 n K d (d + 1)`` per iteration: the textbook
E-step (every component's Mahalanobis GEMM) and M-step (scatter GEMMs).

Usage::

    python benchmarks/compare.py --case smoke          # seconds, run by the tests
    python benchmarks/compare.py --case A --case B --out benchmarks/results/compare
"""

from __future__ import annotations

import argparse
import json
import os
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
SYSTEMS = ("sklearn", "distgmm", "distgmm_f32", "distgmm_inprocess", "onedal", "spark")


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return X, X[rng.choice(n, k, replace=False)]


def start(X, means, ct):
    """Initial parameters for every library: given means, equal weights, 1 sklearn step."""
    from sklearn.mixture import GaussianMixture as SK

    k = len(means)
    w = np.full(k, 1.0 / k)
    sub = X[:: max(1, len(X) // 20000)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # random_state: scikit-learn's k-means still labels the rows for the first
        # covariances, and an unseeded one made every run start elsewhere
        p = SK(k, covariance_type=ct, max_iter=1, weights_init=w, means_init=means,
               random_state=0).fit(sub)
    return dict(weights_init=w, means_init=means, precisions_init=p.precisions_), p


def per_iteration(fit, n1, n2, repeat=2):
    """(best time of an n2-iteration fit - best time of an n1 one) / (n2 - n1).

    Taking the best of ``repeat`` fits of each length before subtracting keeps a slow
    outlier of either length from biasing the difference.
    """
    def timed(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit(n)
            return time.perf_counter() - t0

    t1 = min(timed(n1) for _ in range(repeat))
    t2 = min(timed(n2) for _ in range(repeat))
    return max(t2 - t1, 1e-9) / (n2 - n1)


def gemm_gflops(size=2000, repeat=5):
    """float64 numpy GEMM rate of this process (all BLAS threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(size, size)), rng.normal(size=(size, size))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * size**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def full_gflop(n, d, k):
    return 4.0 * n * k * d * (d + 1) / 1e9


# --- the systems -------------------------------------------------------------------


def time_sklearn(X, k, ct, init, n1, n2):
    from sklearn.mixture import GaussianMixture as SK

    return per_iteration(
        lambda n: SK(k, covariance_type=ct, tol=0, max_iter=n, **init).fit(X), n1, n2)


def time_distgmm(X, k, ct, init, n1, n2, client=None, compute_dtype="float64"):
    import dask

    from distgmm import GaussianMixture

    def fit(n):
        model = GaussianMixture(k, covariance_type=ct, tol=0, max_iter=n,
                                compute_dtype=compute_dtype, **init)
        if client is None:
            with dask.config.set(scheduler="threads"):
                return model.fit(X)
        with client.as_current():
            return model.fit(X)

    return per_iteration(fit, n1, n2)


def time_onedal(X, k, ct, sk_start, n1, n2):
    """oneDAL em_gmm from the same start (full and diag only)."""
    try:
        import daal4py as d4p
    except ImportError:
        return None
    storage = {"full": "full", "diag": "diagonal"}.get(ct)
    if storage is None:
        return None
    w = sk_start.weights_[None, :]
    covs = [c if ct == "full" else c[None, :] for c in sk_start.covariances_]

    def fit(n):
        algo = d4p.em_gmm(k, maxIterations=n, accuracyThreshold=0.0, covarianceStorage=storage)
        return algo.compute(X, w, sk_start.means_, covs)

    return per_iteration(fit, n1, n2)


class Spark:
    """A ``local[2]`` session bound to loopback, or None when Java/pyspark are missing."""

    def __init__(self):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
        from pyspark.sql import SparkSession

        self.session = (
            SparkSession.builder.master("local[2]")
            .config("spark.driver.memory", "6g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
        self.session.sparkContext.setLogLevel("ERROR")

    @classmethod
    def open(cls):
        try:
            return cls()
        except Exception as exc:  # noqa: BLE001 - optional system, report and skip
            print(f"Spark skipped: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)
            return None

    def frame(self, X):
        import pandas as pd
        from pyspark.ml.feature import VectorAssembler

        cols = [f"x{j}" for j in range(X.shape[1])]
        df = self.session.createDataFrame(pd.DataFrame(X, columns=cols))
        vec = VectorAssembler(inputCols=cols, outputCol="features").transform(df)
        vec = vec.select("features").cache()
        vec.count()
        return vec

    def time(self, frame, k, n1, n2):
        """Seconds per iteration, and a note when Spark stopped early (collapsed)."""
        from pyspark.ml.clustering import GaussianMixture as SparkGM

        SparkGM(k=k, maxIter=1, tol=0.0, seed=1).fit(frame)  # JIT and caches warm up
        seconds = per_iteration(
            lambda n: SparkGM(k=k, maxIter=n, tol=0.0, seed=1).fit(frame), n1, n2)
        model = SparkGM(k=k, maxIter=n2, tol=0.0, seed=1).fit(frame)
        iters = model.summary.numIter
        weights = np.asarray(model.weights)
        note = None
        if iters < n2 or weights.max() > 1 - 1e-6:
            note = (f"stopped after {iters} of {n2} iterations, largest weight "
                    f"{weights.max():.3f}")
        return seconds, note

    def close(self):
        self.session.stop()


# --- the run -----------------------------------------------------------------------


def run_case(case, n1, n2, client, spark, chunks):
    import dask.array as da

    n, d, k = CASES[case]
    X, means = make_data(n, d, k)
    Xd = client.persist(da.from_array(X, chunks=(-(-n // chunks), d)))
    rows = []
    for ct in TYPES:
        init, sk_start = start(X, means, ct)
        r = dict(case=case, covariance_type=ct, n=n, d=d, k=k)
        r["sklearn"] = time_sklearn(X, k, ct, init, n1, n2)
        r["distgmm"] = time_distgmm(Xd, k, ct, init, n1, n2, client)
        try:
            r["distgmm_f32"] = time_distgmm(Xd, k, ct, init, n1, n2, client, "float32")
        except ValueError as e:  # float32 moments can lose a covariance's definiteness
            r["distgmm_f32"], r["f32_error"] = None, str(e).split(".")[0]
            print(f"{case} {ct} float32 failed: {r['f32_error']}", flush=True)
        r["distgmm_inprocess"] = time_distgmm(X, k, ct, init, n1, n2)
        r["onedal"] = time_onedal(X, k, ct, sk_start, n1, n2)
        rows.append(r)
        print(_line(r), flush=True)
    if spark is not None:
        frame = spark.frame(X)
        rows[0]["spark"], rows[0]["spark_note"] = spark.time(frame, k, n1, n2)
        frame.unpersist()
        print(f"{case} full spark {rows[0]['spark']:.4f}s {rows[0]['spark_note'] or ''}",
              flush=True)
    return rows


def _line(r):
    parts = [f"{r['case']} {r['covariance_type']:9s}"]
    parts += [f"{s} {r[s]:.4f}s" for s in SYSTEMS if r.get(s) is not None]
    return "  ".join(parts)


def _fmt(x, spec=".4f"):
    return "" if x is None else format(x, spec)


def _ratio(a, b):
    return "" if a is None or b is None else f"{a / b:.3f}x"


def _spark_ratio(dist, r):
    if r.get("spark_note"):
        return f"Spark collapsed ({r['spark_note']})"
    return _ratio(dist, r.get("spark"))


def markdown(rows, gemm):
    head = ("| case | type | scikit-learn | oneDAL | Spark local[2] | distgmm in-process | "
            "distgmm 2x1 | distgmm / sklearn | distgmm / oneDAL | distgmm / Spark | "
            "GFLOP/s (% of GEMM) | distgmm 2x1 float32 | float32 / sklearn | "
            "float32 / oneDAL |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        dist = r["distgmm"]
        rate = ""
        if r["covariance_type"] == "full":
            g = full_gflop(r["n"], r["d"], r["k"]) / dist
            rate = f"{g:.1f} ({100 * g / gemm:.0f}%)"
        lines.append(
            f"| {r['case']} | {r['covariance_type']} | {_fmt(r['sklearn'])} | "
            f"{_fmt(r.get('onedal'))} | {_fmt(r.get('spark'))} | "
            f"{_fmt(r['distgmm_inprocess'])} | {_fmt(dist)} | "
            f"{_ratio(dist, r['sklearn'])} | {_ratio(dist, r.get('onedal'))} | "
            f"{_spark_ratio(dist, r)} | {rate} | "
            f"{'failed' if r.get('f32_error') else _fmt(r.get('distgmm_f32'))} | "
            f"{_ratio(r.get('distgmm_f32'), r['sklearn'])} | "
            f"{_ratio(r.get('distgmm_f32'), r.get('onedal'))} |")
    lines.append("")
    lines.append(f"Seconds per EM iteration; ratios are time ratios (below 1: distgmm is "
                 f"faster). numpy float64 GEMM in the same run: {gemm:.1f} GFLOP/s; "
                 "GFLOP/s count 4nKd(d+1) per iteration.")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES))
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--chunks", type=int, default=8, help="row chunks of the dask array")
    p.add_argument("--no-spark", action="store_true")
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    warnings.filterwarnings("ignore", message="Sending large graph")
    gemm = gemm_gflops()
    print(f"numpy GEMM {gemm:.1f} GFLOP/s", flush=True)
    spark = None if args.no_spark else Spark.open()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    try:
        with cluster, Client(cluster, set_as_default=False) as client:
            rows = [r for case in (args.case or ["smoke"])
                    for r in run_case(case, args.n1, args.n2, client, spark, args.chunks)]
    finally:
        if spark is not None:
            spark.close()
    table = markdown(rows, gemm)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"gemm_gflops": gemm, "n1": args.n1, "n2": args.n2, "rows": rows}
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
