"""Seconds per iteration: distgmm's BayesianGaussianMixture vs its GaussianMixture and
scikit-learn's BayesianGaussianMixture, in one run.

The same generated data as ``compare.py`` (its cases; ``A`` is 1e6 x 16, K=8), ``full``
covariance by default, ``tol=0`` and a fixed number of iterations. Each iteration is
timed on its own: distgmm's ``timings_["iterations"]``, scikit-learn's ``verbose=2``
per-iteration "time lapse" lines. The systems take turns, ``--rounds`` times, and the
table gives the median (and the best) over every iteration timed, so initialisation
and the Bayesian priors' data pass are left out and a machine loaded by other work
biases no system more than another. (The difference of two fits of different lengths,
as ``compare.py`` measures, came out negative on a machine at load 20.)

Systems:

- ``distgmm_gmm``, ``distgmm_bayes``: on a ``LocalCluster(n_workers=2,
  threads_per_worker=1)``, data persisted (as ``compare.py`` runs distgmm);
- ``distgmm_gmm_inprocess``, ``distgmm_bayes_inprocess``: numpy input in this process;
- ``sklearn_bayes``: scikit-learn's ``BayesianGaussianMixture`` in this process.

The Bayesian fits start from ``init_params="random_from_data"`` (cheap; the start does
not enter the per-iteration time), the EM fits from ``compare.start``.

Usage::

    python benchmarks/bayes.py --case smoke
    python benchmarks/bayes.py --case A --out benchmarks/results/issue15-bayes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from compare import CASES, make_data, start  # noqa: E402

SYSTEMS = ("distgmm_gmm", "distgmm_bayes", "distgmm_gmm_inprocess",
           "distgmm_bayes_inprocess", "sklearn_bayes")


def _fit_in(client, model, X):
    import dask

    if client is None:
        with dask.config.set(scheduler="threads"):
            return model.fit(X)
    with client.as_current():
        return model.fit(X)


def iterations_gmm(X, k, ct, init, n, client=None) -> list:
    from distgmm import GaussianMixture

    model = _fit_in(client, GaussianMixture(k, covariance_type=ct, tol=0, max_iter=n,
                                            **init), X)
    return list(model.timings_["iterations"])


def iterations_bayes(X, k, ct, n, client=None) -> list:
    from distgmm import BayesianGaussianMixture

    model = _fit_in(client, BayesianGaussianMixture(
        n_components=k, covariance_type=ct, tol=0, max_iter=n, random_state=0,
        init_params="random_from_data"), X)
    return list(model.timings_["iterations"])


def iterations_sklearn_bayes(X, k, ct, n) -> list:
    """scikit-learn's own per-iteration times (``verbose=2`` prints each one)."""
    import contextlib
    import io
    import re

    from sklearn.mixture import BayesianGaussianMixture

    class _ScalarBound(BayesianGaussianMixture):
        # scikit-learn's tied bound is a 1-element array, which its own verbose=2 line
        # cannot format (TypeError): hand it the float (costs nothing per iteration)
        def _compute_lower_bound(self, *args, **kwargs):
            return float(np.ravel(super()._compute_lower_bound(*args, **kwargs))[0])

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _ScalarBound(n_components=k, covariance_type=ct, tol=0, max_iter=n,
                                random_state=0, init_params="random_from_data", verbose=2,
                                verbose_interval=1).fit(X)
    # the first lapse runs from the end of the initialisation: it is an iteration too
    return [float(t) for t in re.findall(r"time lapse ([0-9.]+)s\s+ll change", out.getvalue())]


def run_case(case, ct, n_iter, rounds, client, skip_sklearn=False) -> dict:
    import dask.array as da

    n, d, k = CASES[case]
    X, means = make_data(n, d, k)
    init, _ = start(X, means, ct)
    times: dict[str, list] = {}
    Xd = None if client is None else client.persist(
        da.from_array(X, chunks=(-(-n // 8), d)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):  # the systems take turns: load drifts evenly over them
            if Xd is not None:
                times.setdefault("distgmm_gmm", []).extend(
                    iterations_gmm(Xd, k, ct, init, n_iter, client))
                times.setdefault("distgmm_bayes", []).extend(
                    iterations_bayes(Xd, k, ct, n_iter, client))
            times.setdefault("distgmm_gmm_inprocess", []).extend(
                iterations_gmm(X, k, ct, init, n_iter))
            times.setdefault("distgmm_bayes_inprocess", []).extend(
                iterations_bayes(X, k, ct, n_iter))
            if not skip_sklearn:
                times.setdefault("sklearn_bayes", []).extend(
                    iterations_sklearn_bayes(X, k, ct, n_iter))
    row = {"case": case, "covariance_type": ct, "n": n, "d": d, "k": k,
           "iterations": times}
    for system, ts in times.items():
        row[system] = float(np.median(ts))
        row[system + "_best"] = float(np.min(ts))
    return row


def ratios(row: dict) -> dict:
    out = {}
    for where in ("", "_inprocess"):
        gmm, bayes = row.get(f"distgmm_gmm{where}"), row.get(f"distgmm_bayes{where}")
        if gmm and bayes:
            out[f"bayes/gmm{where}"] = bayes / gmm
        if bayes and row.get("sklearn_bayes"):
            out[f"sklearn/bayes{where}"] = row["sklearn_bayes"] / bayes
    return out


def table(rows: list) -> str:
    cols = [s for s in SYSTEMS if any(s in r for r in rows)]
    keys = sorted({key for r in rows for key in ratios(r)})
    head = "| case | type | " + " | ".join(f"{c} (s/iter, median; best)" for c in cols)
    head += " | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols) + len(keys))]
    for r in rows:
        rr = ratios(r)
        cells = [f"{r[c]:.4f}; {r[c + '_best']:.4f}" if c in r else "" for c in cols]
        cells += [f"{rr[key]:.2f}x" if key in rr else "" for key in keys]
        lines.append(f"| {r['case']} | {r['covariance_type']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES))
    p.add_argument("--type", action="append", dest="types",
                   choices=("full", "tied", "diag", "spherical"))
    p.add_argument("--iterations", type=int, default=4, help="Per fit.")
    p.add_argument("--rounds", type=int, default=2, help="Fits per system, in turns.")
    p.add_argument("--no-cluster", action="store_true")
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--out", help="Write OUT.json and OUT.md.")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Sending large graph")
    rows = []
    client = cluster = None
    if not args.no_cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster, set_as_default=False)
    try:
        for case in args.case or ["smoke"]:
            for ct in args.types or ["full"]:
                t0 = time.perf_counter()
                row = run_case(case, ct, args.iterations, args.rounds, client,
                               args.no_sklearn)
                rows.append(row)
                print(f"{case} {ct}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in {**row, **ratios(row)}.items()
                    if isinstance(v, float) and not k.endswith("_best"))
                    + f" ({time.perf_counter() - t0:.0f} s)",
                    flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    md = table(rows)
    print(md)
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"rows": rows, "ratios": [ratios(r) for r in rows]}, indent=2))
        Path(args.out).with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
