"""The CPU floor of an out-of-core pass over many small Parquet files, against the same
rows in a few big files, and what it bounds (issue 17: 2,000 files of 500 rows within
1.3x of the best layout).

One process measures CPU seconds (``time.process_time``, all threads), the least of
``--reps`` repeats:

- ``arithmetic``: one EM iteration on the rows in memory (distgmm's kernel; the
  difference of an ``--n2``- and an ``--n1``-iteration fit);
- a raw pass (``X.sum``, synchronous scheduler) over each layout as distgmm reads it
  (``ParquetSource``: decode, conversion to float64, the task's own work);
- the small files decoded by other routes, per file: arrow parsing a file read whole
  (what distgmm does per file), arrow given the footer already parsed (what a footer
  cache could give), and polars 2 when it is installed (not a dependency; one thread
  unless ``POLARS_MAX_THREADS`` is already set: its threads' CPU would count too),
  one file at a time and 20 files per scan, both converted to numpy.

A pass cannot take less than its CPU seconds over the cores (``floor`` = (arithmetic +
decode) / cores: perfect overlap, no task or scheduling cost). The same run then times
both layouts' real out-of-core iterations on a ``LocalCluster`` (2 x 1; the floors count
at most its 2 cores), as ``parquet_layouts.py`` does. The big files' measured iteration
minus their floor is what a pass costs beyond its CPU (scheduling, the reduction, the
M-step, stalls); each read's ``predicted`` iteration is its floor plus that cost, and
its ratio to the big files' measured iteration is what the small files could reach with
that decoder. The prediction for distgmm's own read can be checked against its measured
iteration. The other decoders' floors leave out the conversion of arrow columns to one
float array (polars' include it), so their predictions are, if anything, low.

Usage::

    python benchmarks/small_files.py --out benchmarks/results/issue17-small-files
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from chunking import make_data, per_iteration  # noqa: E402
from parquet_layouts import write_files  # noqa: E402

BATCH = 20  # files per polars scan
WORKERS = 2  # single-threaded workers of the measured cluster


def cpu(fn, reps: int) -> float:
    """Least CPU seconds (this process, all threads) of ``reps`` calls of ``fn``."""
    best = np.inf
    for _ in range(reps):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def arithmetic_cpu(X, means, n1: int, n2: int, reps: int) -> float:
    """CPU seconds of one EM iteration on ``X`` in memory."""
    import distgmm

    def fit(iters):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tol=0 never "converges": that is the point
                distgmm.GaussianMixture(len(means), means_init=means, max_iter=iters,
                                        tol=0).fit(X)
        return run

    fit(1)()  # kernel load, first-touch of buffers
    return (cpu(fit(n2), reps) - cpu(fit(n1), reps)) / (n2 - n1)


def raw_pass_cpu(path: str, reps: int) -> float:
    """CPU seconds of one raw pass over ``path`` as distgmm reads it."""
    import dask

    from distgmm.io.sources import ParquetSource

    X = ParquetSource(path).load().X
    with dask.config.set(scheduler="synchronous"):
        X.sum(axis=0).compute()  # imports, page cache
        return cpu(lambda: X.sum(axis=0).compute(), reps)


def decoders(files: list[str], columns: list[str]) -> dict:
    """Per-file decoders of the small files: name -> function reading them all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def whole():
        for f in files:
            with open(f, "rb") as fh:
                pq.ParquetFile(pa.BufferReader(fh.read())).read_row_groups(
                    [0], use_threads=False, columns=columns)

    footers = {f: pq.read_metadata(f) for f in files}

    def parsed_footer():
        for f in files:
            with open(f, "rb") as fh:
                pq.ParquetFile(pa.BufferReader(fh.read()), metadata=footers[f]
                               ).read_row_groups([0], use_threads=False, columns=columns)

    out = {"arrow, file read whole (distgmm's route)": whole,
           "arrow, footer already parsed": parsed_footer}
    try:
        os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before its import: no spinning pool
        import polars as pl
    except ImportError:
        return out

    def polars_each():
        for f in files:
            pl.read_parquet(f, columns=columns).to_numpy()

    def polars_scan():
        for i in range(0, len(files), BATCH):
            pl.scan_parquet(files[i:i + BATCH]).select(columns).collect().to_numpy()

    out[f"polars {pl.__version__}, one file a call, to numpy"] = polars_each
    out[f"polars {pl.__version__}, {BATCH} files a scan, to numpy"] = polars_scan
    return out


def out_of_core(small: str, big: str, means, args) -> dict:
    """Measured out-of-core seconds per iteration of both layouts, as parquet_layouts.py."""
    from distributed import Client, LocalCluster

    from distgmm.io.sources import ParquetSource

    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster):
        ParquetSource(big).load().X.sum(axis=0).compute()  # the workers' imports
        return {name: per_iteration(ParquetSource(path).load().X, means, args.n1, args.n2,
                                    args.timed_iters, cache="none")
                for name, path in (("small", small), ("big", big))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--small", type=int, default=500, help="rows per small file")
    p.add_argument("--big", type=int, default=50_000, help="rows per big file")
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timed-iters", type=int, default=12)
    p.add_argument("--no-cluster", action="store_true",
                   help="the CPU floors only (no measured out-of-core iterations)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    # the floor's cores: those the measured cluster's workers can use
    cores = min(WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())
    X, means = make_data(args.n, args.d, args.k)
    columns = [f"f{j}" for j in range(args.d)]
    big_files = -(-args.n // args.big)
    with tempfile.TemporaryDirectory() as tmp:
        small, big = write_files(Path(tmp), X, args.small), write_files(Path(tmp), X, args.big)
        files = sorted(str(f) for f in Path(small).iterdir())
        arith = arithmetic_cpu(X, means, args.n1, args.n2, args.reps)
        cpu_s = {f"{len(files):,} files of {args.small:,} rows, as distgmm reads":
                 raw_pass_cpu(small, args.reps)}
        for name, fn in decoders(files, columns).items():
            fn()  # imports, page cache
            cpu_s[f"{len(files):,} files, {name}"] = cpu(fn, args.reps)
        big_name = f"{big_files:,} files of {args.big:,} rows, as distgmm reads"
        cpu_s[big_name] = raw_pass_cpu(big, args.reps)
        measured = {} if args.no_cluster else out_of_core(small, big, means, args)
    floors = {name: (arith + s) / cores for name, s in cpu_s.items()}
    result = {"cores": cores, "arithmetic_cpu_s": arith, "decode_cpu_s": cpu_s,
              "floor_s": floors, "out_of_core_s": measured, "files": len(files)}
    lines = [f"Arithmetic: {arith:.3f} CPU-s per iteration; {cores} cores."]
    if measured:
        lines[0] += (f" Out of core, measured: small files {measured['small']:.3f} s/iter, "
                     f"big files {measured['big']:.3f} s/iter "
                     f"({measured['small'] / measured['big']:.2f}x).")
    # what a pass costs beyond its CPU floor (scheduling, the reduction, the M-step,
    # stalls), taken from the big files, whose decode is cheap
    fixed = measured["big"] - floors[big_name] if measured else None
    result["fixed_s"] = fixed
    lines += ["", "| read | CPU-s per pass | ms per file | floor s/iter | predicted s/iter "
              "| predicted / big files measured |", "|---|---|---|---|---|---|"]
    for name, s in cpu_s.items():
        per_file = s / (big_files if name == big_name else len(files)) * 1e3
        shown = [f"{floors[name] + fixed:.3f}", f"{(floors[name] + fixed) / measured['big']:.2f}"] \
            if measured else ["-", "-"]
        lines.append(f"| {name} | {s:.3f} | {per_file:.3f} | {floors[name]:.3f} | "
                     + " | ".join(shown) + " |")
    print("\n".join(lines))
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
