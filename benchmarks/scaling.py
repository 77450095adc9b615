"""Out-of-core scaling: seconds per EM iteration and peak worker memory against n.

For each n, a Zarr array of n x d rows is written chunk by chunk (never held in memory)
and fitted with ``cache="none"`` (every pass re-reads Zarr, opened by
``distgmm.open_source`` with the same chunk size for every n, ``--chunk-mib``, 8 MiB by
default so that the smallest n fills whole chunks too: a worker's memory follows the
chunk size -- a task reading a Zarr chunk holds about three times its size while it
decompresses -- not n) on a fresh ``LocalCluster(n_workers=2, threads_per_worker=1)``.
Reported per n:

- ``ooc_s_per_iter``: out-of-core seconds per iteration (difference of an ``n2`` and an
  ``n1`` iteration fit, divided by ``n2 - n1``, same initial parameters, tol=0; the
  best of two fits of each length);
- ``read_s``: one raw read pass over the array (sum of every chunk) on the same cluster
  (the better of two; the first also warms the workers up);
- ``mem_s_per_iter``: seconds per iteration with the data persisted in worker memory;
- ``ooc / (mem + read)``: the out-of-core overhead ratio (target <= 1.3);
- ``peak_worker_mib``: the largest peak RSS of a worker process during the out-of-core
  fits (``VmHWM``, restarted after the raw reads through ``/proc/self/clear_refs``;
  where that is not writable it covers the reads too), ``peak_read_mib`` the same
  during the raw reads (a plain dask ``map_blocks`` pass), and ``idle_worker_mib``
  before any work. The cluster is fresh for each n.

Usage::

    python benchmarks/scaling.py                                   # 1e5, 1e6, 1e7 rows
    python benchmarks/scaling.py --rows 100000 --rows 1000000 --out results/scaling
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

CHUNK_ROWS = 65_536  # 8 MiB Zarr chunks at 16 features: every n can fill an 8 MiB dask chunk


def write_zarr(path: Path, n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Write blobs to ``path`` chunk by chunk; return the true centres."""
    import zarr

    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    z = zarr.create_array(str(path), shape=(n, d), chunks=(CHUNK_ROWS, d), dtype="f8")
    for a in range(0, n, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, n)
        z[a:b] = centers[rng.integers(0, k, b - a)] + rng.normal(size=(b - a, d))
    return centers


def _peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``. Not ``getrusage``'s ``ru_maxrss``, which
    survives ``exec`` and so starts a spawned worker at the peak of the process that
    forked it (the driver): earlier runs of this script reported that as the workers'
    "idle" memory, 215-316 MiB for workers that held 61 MiB.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    """Restart ``VmHWM`` from the current RSS (Linux ``clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _sum_chunk(block):
    return np.array([[block.sum()]])


def _timed_read(X) -> float:
    t0 = time.perf_counter()
    X.map_blocks(_sum_chunk, chunks=(1, 1)).sum().compute()
    return time.perf_counter() - t0


def measure(path: Path, n: int, d: int, k: int, ct: str, n1: int, n2: int,
            chunk_bytes: int = 8 << 20) -> dict:
    from distributed import Client, LocalCluster, wait

    from distgmm import GaussianMixture, open_source

    rng = np.random.default_rng(1)
    X = open_source(str(path), chunk_bytes=chunk_bytes).load().X
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        baseline = max(client.run(_peak_rss_mib).values())
        first = X[: 10 * k].compute()
        init = dict(means_init=first[rng.choice(len(first), k, replace=False)])

        def per_iteration(data, cache, repeat=2):
            def timed(iters):
                model = GaussianMixture(k, covariance_type=ct, tol=0, max_iter=iters,
                                        cache=cache, **init)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(data)
                return time.perf_counter() - t0
            t1 = min(timed(n1) for _ in range(repeat))
            return max(min(timed(n2) for _ in range(repeat)) - t1, 1e-9) / (n2 - n1)

        read = min(_timed_read(X) for _ in range(2))  # the first also warms the workers
        peak_read = max(client.run(_peak_rss_mib).values())
        separate = all(client.run(_reset_peak).values())
        ooc = per_iteration(X, "none")
        peak = max(client.run(_peak_rss_mib).values())
        in_memory = X.persist()  # once, so that reading it does not enter the timings
        wait(in_memory)
        mem = per_iteration(in_memory, "memory")
    return dict(n=n, d=d, k=k, covariance_type=ct, read_s=read, ooc_s_per_iter=ooc,
                mem_s_per_iter=mem, ratio=ooc / (mem + read), peak_worker_mib=peak,
                peak_read_mib=peak_read, peak_is_fit_only=separate,
                idle_worker_mib=baseline,
                gib=n * d * 8 / 2**30)


def markdown(rows):
    lines = ["| n | GiB | raw read s | in-memory s/it | out-of-core s/it | "
             "ooc / (mem + read) | peak worker MiB, fit | peak worker MiB, raw read | "
             "idle worker MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit = f"{r['peak_worker_mib']:.0f}" + ("" if r["peak_is_fit_only"] else " (with reads)")
        lines.append(f"| {r['n']:,} | {r['gib']:.2f} | {r['read_s']:.3f} | "
                     f"{r['mem_s_per_iter']:.3f} | {r['ooc_s_per_iter']:.3f} | "
                     f"{r['ratio']:.2f} | {fit} | {r['peak_read_mib']:.0f} | "
                     f"{r['idle_worker_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, action="append")
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--components", type=int, default=8)
    p.add_argument("--covariance-type", default="full")
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--chunk-mib", type=int, default=8,
                   help="dask chunk size; memory depends on it, not on n")
    p.add_argument("--workdir", type=Path, help="where the Zarr inputs go (default: a temp dir)")
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in args.rows or [100_000, 1_000_000, 10_000_000]:
            path = Path(tmp) / f"x{n}.zarr"
            write_zarr(path, n, args.features, args.components)
            rows.append(measure(path, n, args.features, args.components,
                                args.covariance_type, args.n1, args.n2,
                                args.chunk_mib << 20))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
