"""Seconds per iteration: distgmm's BayesianGaussianMixture vs its GaussianMixture and
scikit-learn's BayesianGaussianMixture, in one run.

The same generated data as ``compare.py`` (its cases; ``A`` is 1e6 x 16, K=8), ``full``
covariance by default, ``tol=0`` and fixed iteration counts; the time per iteration is
the difference between an ``n2``-iteration fit and an ``n1``-iteration one divided by
``n2 - n1`` (``compare.per_iteration``), so initialisation, the Bayesian priors' data
pass and the final steps cancel out.

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
from compare import CASES, make_data, per_iteration, start  # noqa: E402

SYSTEMS = ("distgmm_gmm", "distgmm_bayes", "distgmm_gmm_inprocess",
           "distgmm_bayes_inprocess", "sklearn_bayes")


def _fit_in(client, model, X):
    import dask

    if client is None:
        with dask.config.set(scheduler="threads"):
            return model.fit(X)
    with client.as_current():
        return model.fit(X)


def time_gmm(X, k, ct, init, n1, n2, repeat, client=None):
    from distgmm import GaussianMixture

    return per_iteration(lambda n: _fit_in(client, GaussianMixture(
        k, covariance_type=ct, tol=0, max_iter=n, **init), X), n1, n2, repeat)


def time_bayes(X, k, ct, n1, n2, repeat, client=None):
    from distgmm import BayesianGaussianMixture

    return per_iteration(lambda n: _fit_in(client, BayesianGaussianMixture(
        n_components=k, covariance_type=ct, tol=0, max_iter=n, random_state=0,
        init_params="random_from_data"), X), n1, n2, repeat)


def time_sklearn_bayes(X, k, ct, n1, n2, repeat):
    from sklearn.mixture import BayesianGaussianMixture

    return per_iteration(lambda n: BayesianGaussianMixture(
        n_components=k, covariance_type=ct, tol=0, max_iter=n, random_state=0,
        init_params="random_from_data").fit(X), n1, n2, repeat)


def run_case(case, ct, n1, n2, repeat, client, skip_sklearn=False) -> dict:
    import dask.array as da

    n, d, k = CASES[case]
    X, means = make_data(n, d, k)
    init, _ = start(X, means, ct)
    row = {"case": case, "covariance_type": ct, "n": n, "d": d, "k": k}
    if client is not None:
        Xd = client.persist(da.from_array(X, chunks=(-(-n // 8), d)))
        row["distgmm_gmm"] = time_gmm(Xd, k, ct, init, n1, n2, repeat, client)
        row["distgmm_bayes"] = time_bayes(Xd, k, ct, n1, n2, repeat, client)
        del Xd
    row["distgmm_gmm_inprocess"] = time_gmm(X, k, ct, init, n1, n2, repeat)
    row["distgmm_bayes_inprocess"] = time_bayes(X, k, ct, n1, n2, repeat)
    if not skip_sklearn:
        row["sklearn_bayes"] = time_sklearn_bayes(X, k, ct, n1, n2, repeat)
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
    head = "| case | type | " + " | ".join(f"{c} (s/iter)" for c in cols)
    head += " | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols) + len(keys))]
    for r in rows:
        rr = ratios(r)
        cells = [f"{r[c]:.4f}" if c in r else "" for c in cols]
        cells += [f"{rr[key]:.2f}x" if key in rr else "" for key in keys]
        lines.append(f"| {r['case']} | {r['covariance_type']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES))
    p.add_argument("--type", action="append", dest="types",
                   choices=("full", "tied", "diag", "spherical"))
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=5)
    p.add_argument("--repeat", type=int, default=2)
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
                row = run_case(case, ct, args.n1, args.n2, args.repeat, client,
                               args.no_sklearn)
                rows.append(row)
                print(f"{case} {ct}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in {**row, **ratios(row)}.items()
                    if isinstance(v, float)) + f" ({time.perf_counter() - t0:.0f} s)",
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
