"""Per-iteration overhead against the number of chunks, on a simulated larger cluster.

Starts a real ``dask scheduler`` and ``--workers`` single-thread ``dask worker``
processes on 127.0.0.1, then fits data of tiny chunks (``--chunk-rows`` rows x 4
features, K=2, diag: the arithmetic is negligible, so what is measured is the cost of a
pass: building, scheduling, gathering and combining) with 100, 1,000 and 10,000 chunks,
persisted (by distgmm, and by the user: ``client.persist`` before the fit, chunks left
where Dask put them; ``dask_floor`` is what touching those chunks costs Dask alone) and
out of core (a Zarr array with those chunks, ``cache="none"``), and the raw read of
that array's chunk files in one process (``raw_read``: the floor of any pass that
re-reads them).
Per iteration: the median of the fits' own per-iteration times (iterations after the
``--n1``-th of fits of ``--n2``), same start. Persisted data that distgmm persists itself
is packed into blocks (``distgmm.parallel.blocks.pack_plan``); out of core, every
chunk is one Zarr chunk file to read.

Usage::

    python benchmarks/scale.py --workers 8 --out benchmarks/results/issue17-scale
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(n_workers: int, tmp: str):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bindir = os.path.dirname(sys.executable)
    procs = [subprocess.Popen([os.path.join(bindir, "dask"), "scheduler", "--host",
                               "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(n_workers):
        procs.append(subprocess.Popen(
            [os.path.join(bindir, "dask"), "worker", address, "--nthreads", "1",
             "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", ":0",
             "--local-directory", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return address, procs


def per_iteration(X, k, n1, n2, **kw):
    """Median seconds per EM iteration, timed by the fits themselves
    (``timings_["iterations"]``), iterations after the ``n1``-th of fits of ``n2``."""
    import distgmm

    means = np.asarray(X[:k].compute() if hasattr(X, "compute") else X[:k])

    def fit(iters):
        gm = distgmm.GaussianMixture(k, covariance_type="diag", means_init=means,
                                     max_iter=iters, tol=0, **kw)
        gm.fit(X)
        return gm.timings_["iterations"]

    fit(1)
    timed: list[float] = []
    while len(timed) < 6:
        timed += fit(n2)[n1:]
    return float(np.median(timed))


def raw_read(path: str) -> float:
    """Seconds to read the whole Zarr array once in this process, the median of three:
    through zarrs' Rust pipeline where it is installed (the route distgmm reads local
    Zarr by), else zarr-python's."""
    import time

    import zarr

    try:
        import zarrs  # noqa: F401

        config = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}
    except ImportError:
        config = {}
    times = []
    with zarr.config.set(config):
        z = zarr.open_array(path, mode="r")
        z[:]  # warm: metadata, imports, the page cache
        for _ in range(3):
            t = time.perf_counter()
            z[:]
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def _count(chunks) -> int:
    return len(chunks)


def dask_floor(client, persisted, rounds: int = 5) -> float:
    """Seconds for Dask alone to touch every chunk of a persisted array once: one
    no-op task per holding worker over the chunks it holds (the least a pass over
    user-persisted chunks asks of the scheduler), median of ``rounds``."""
    import time

    from dask.core import flatten

    graph = persisted.__dask_graph__()
    futures = [graph[k] for k in flatten(persisted.__dask_keys__())]
    who = client.who_has(futures)
    by_worker: dict = {}
    for f in futures:
        by_worker.setdefault(sorted(who[f.key])[0], []).append(f)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        client.gather([client.submit(_count, fs, workers=[w], pure=False)
                       for w, fs in by_worker.items()])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--chunks", type=int, action="append")
    p.add_argument("--chunk-rows", type=int, default=20)
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not 0 <= args.n1 < args.n2:
        p.error("--n1 must be at least 0 and below --n2")
    chunk_counts = args.chunks or [100, 1_000, 10_000]

    import dask.array as da
    import zarr
    from distributed import Client

    # a SIGTERM (e.g. from `timeout`) unwinds through the finally below: no stray
    # workers; the caller's handler is back afterwards (the smoke test runs in pytest)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        address, procs = start_cluster(args.workers, tmp)
        try:
            with Client(address, timeout=60) as client:
                client.wait_for_workers(args.workers, timeout=120)
                for n_chunks in chunk_counts:
                    n = n_chunks * args.chunk_rows
                    X = rng.normal(size=(n, 4)) + rng.integers(0, 2, n)[:, None] * 4.0
                    path = f"{tmp}/x-{n_chunks}.zarr"
                    z = zarr.create_array(store=path, shape=X.shape,
                                          chunks=(args.chunk_rows, 4), dtype="f8")
                    z[:] = X
                    persisted = da.from_array(X, chunks=(args.chunk_rows, 4))
                    r = {"chunks": n_chunks, "workers": args.workers,
                         "persisted_s": per_iteration(persisted, 2, args.n1, args.n2,
                                                      cache="memory"),
                         "user_persisted_s": per_iteration(
                             user := client.persist(persisted), 2, args.n1, args.n2,
                             cache="memory"),
                         "dask_floor_s": dask_floor(client, user),
                         "out_of_core_s": per_iteration(da.from_zarr(path), 2, args.n1,
                                                        args.n2, cache="none"),
                         "raw_read_s": raw_read(path)}
                    results.append(r)
                    print(json.dumps(r), flush=True)
        finally:
            # workers first, while their scheduler still answers: a worker closing
            # against a scheduler that is gone too waited 30 s for its comms, 1 run in 3
            for group in (procs[1:], procs[:1]):
                for proc in group:
                    proc.terminate()
                for proc in group:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:  # still closing: no strays
                        proc.kill()
                        proc.wait()
            signal.signal(signal.SIGTERM, previous)
    base = results[0]
    print("| chunks | persisted s/iter | / first | user persisted | / first | Dask floor "
          "| out of core s/iter | / first | raw read s | out of core / raw read |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['chunks']:,} | {r['persisted_s']:.3f} | "
              f"{r['persisted_s'] / base['persisted_s']:.2f} | {r['user_persisted_s']:.3f} | "
              f"{r['user_persisted_s'] / base['user_persisted_s']:.2f} | "
              f"{r['dask_floor_s']:.3f} | {r['out_of_core_s']:.3f} | "
              f"{r['out_of_core_s'] / base['out_of_core_s']:.2f} | {r['raw_read_s']:.3f} | "
              f"{r['out_of_core_s'] / r['raw_read_s']:.2f} |")
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
