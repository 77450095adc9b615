"""Quality of the default start: distgmm's final log-likelihood against scikit-learn's.

Both with default settings (``init_params="kmeans"``, ``n_init=1``, tol 1e-3) and the same
``random_state``; the score is the final mean log-likelihood on the data fitted. A case
counts as "not worse" when distgmm's score is at least scikit-learn's minus 1e-4.

Suites:

- ``real``: scikit-learn's bundled data sets (iris, wine, breast_cancer, digits), raw and
  standardised, full and diag;
- ``synthetic``: mixtures of our own, more rows than the sample so that the sampled start
  really samples: overlapping, 1:100 imbalanced, elongated, nearly singular, K up to 50,
  d up to 100.

Usage::

    python benchmarks/init_quality.py --seeds 3 --out benchmarks/results/issue17-init-quality
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def real_cases():
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    for name, k in [("iris", 3), ("wine", 3), ("breast_cancer", 2), ("digits", 10)]:
        X, _ = getattr(datasets, f"load_{name}")(return_X_y=True)
        for std in (False, True):
            Z = StandardScaler().fit_transform(X) if std else X.astype(float)
            for ct in ("full", "diag"):
                yield f"{name}{'-std' if std else ''}", Z, k, ct


def _mixture(rng, n, k, d, spread, scales, weights):
    means = rng.normal(scale=spread, size=(k, d))
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    noise = rng.normal(size=(n, d)) * scales[labels]
    return means[labels] + noise


def synthetic_cases(seed=0):
    rng = np.random.default_rng(seed)
    n = 60_000
    specs = {
        "overlap-k5-d8": (5, 8, 1.5, np.ones((5, 8)), np.ones(5)),
        "imbalance-1:100-k4-d6": (4, 6, 6.0, np.ones((4, 6)), np.array([100, 100, 100, 1.0])),
        "elongated-k6-d10": (6, 10, 5.0, np.tile(np.r_[10.0, np.full(9, 0.3)], (6, 1)),
                             np.ones(6)),
        "near-singular-k4-d12": (4, 12, 5.0, np.tile(np.r_[np.ones(6), np.full(6, 1e-4)],
                                                      (4, 1)), np.ones(4)),
        "k50-d10": (50, 10, 8.0, np.ones((50, 10)), np.ones(50)),
        "k5-d100": (5, 100, 1.0, np.ones((5, 100)), np.ones(5)),
    }
    for name, (k, d, spread, scales, weights) in specs.items():
        X = _mixture(rng, n, k, d, spread, scales, weights)
        for ct in ("full", "diag"):
            yield name, X, k, ct


def run_case(X, k, ct, seed):
    from sklearn.mixture import GaussianMixture as SK

    import distgmm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        theirs = SK(k, covariance_type=ct, random_state=seed).fit(X)
        t_sk = time.perf_counter() - t
        t = time.perf_counter()
        ours = distgmm.GaussianMixture(k, covariance_type=ct, random_state=seed).fit(X)
        t_ours = time.perf_counter() - t
    return {"sklearn": theirs.score(X), "distgmm": ours.score(X),
            "sklearn_s": t_sk, "distgmm_s": t_ours}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=["real", "synthetic", "all"], default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    suites = {"real": [real_cases], "synthetic": [synthetic_cases],
              "all": [real_cases, synthetic_cases]}[args.suite]
    rows = []
    for suite in suites:
        for name, X, k, ct in suite():
            for seed in range(args.seeds):
                r = run_case(X, k, ct, seed)
                r.update(case=name, covariance_type=ct, seed=seed, k=k, shape=list(X.shape))
                r["diff"] = r["distgmm"] - r["sklearn"]
                rows.append(r)
                print(f"{name:24s} {ct:5s} seed={seed} sklearn={r['sklearn']:.5f} "
                      f"distgmm={r['distgmm']:.5f} diff={r['diff']:+.5f}", flush=True)
    diffs = np.array([r["diff"] for r in rows])
    summary = {"cases": len(rows), "not_worse": int((diffs >= -1e-4).sum()),
               "not_worse_fraction": float((diffs >= -1e-4).mean()),
               "worst": float(diffs.min()), "below_1e-2": int((diffs < -1e-2).sum())}
    print(json.dumps(summary))
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                            indent=1))


if __name__ == "__main__":
    main()
