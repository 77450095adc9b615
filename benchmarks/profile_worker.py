"""Where a worker's time goes during EM iterations: py-spy on a LocalCluster worker.

Fits case A or B (see compare.py) on ``LocalCluster(n_workers=2, threads_per_worker=1)``
with the data persisted, records one worker with py-spy (``pip install -e ".[bench]"``)
for ``--seconds`` while iterations run, and prints the share of samples per source
line (the innermost frame), so before/after profiles of the kernel can be compared.

Usage::

    python benchmarks/profile_worker.py --case A --covariance-type full
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

from compare import CASES, make_data, start


def summarize(raw: Path, top: int) -> list[tuple[float, str]]:
    """(share of samples, innermost frame) from py-spy's ``raw`` (collapsed) output."""
    leaf: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf[stack.split(";")[-1]] += int(count)
    total = sum(leaf.values()) or 1
    return [(n / total, frame) for frame, n in leaf.most_common(top)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="A", choices=sorted(CASES))
    p.add_argument("--covariance-type", default="full")
    p.add_argument("--compute-dtype", default="float64")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    import dask.array as da
    from distributed import Client, LocalCluster

    from distgmm import GaussianMixture

    warnings.filterwarnings("ignore")
    n, d, k = CASES[args.case]
    X, means = make_data(n, d, k)
    init, _ = start(X, means, args.covariance_type)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        Xd = client.persist(da.from_array(X, chunks=(-(-n // 8), d)))
        pid = next(iter(client.run(os.getpid).values()))
        stop = threading.Event()

        def iterate():
            while not stop.is_set():
                GaussianMixture(k, covariance_type=args.covariance_type, tol=0, max_iter=5,
                                compute_dtype=args.compute_dtype, **init).fit(Xd)

        runner = threading.Thread(target=iterate, daemon=True)
        runner.start()
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "profile.txt"
            subprocess.run([spy, "record", "--pid", str(pid), "--duration",
                            str(int(args.seconds)), "--format", "raw", "--rate", "200",
                            "-o", str(raw)], check=True, capture_output=True)
            stop.set()
            runner.join()
            rows = summarize(raw, args.top)
    print(f"case {args.case} {args.covariance_type} {args.compute_dtype}: "
          "share of one worker's samples by innermost frame")
    for share, frame in rows:
        print(f"{100 * share:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
