"""Seconds per EM iteration for the same rows laid out as different Parquet datasets.

The same rows (case A by default: 1e6 x 16, K=8, full) written as: one file of one row
group; one file of 500-row row groups; 2,000 files of 500 rows; 20 files of 50,000 rows.
Each is opened with ``ParquetSource`` and fitted on a ``LocalCluster(2 x 1)`` persisted
(``cache="memory"``) and out of core (``cache="none"``: every iteration re-reads the
files). Per iteration = the median of the fits' own per-iteration times, as in
``chunking.py``; also ``load()`` seconds, the partitions the source made, and one raw
pass (``X.sum``). Ratios are to the best layout of the same run.

Seconds to a model: the source's ``load()`` seconds plus the wall time of a whole fit
(``--model-iters`` iterations, tol=0, the default start), with ``cache="memory"``
(distgmm's persisted copy included) and ``cache="none"``; median of two fits (as in
``chunking.py``).

Usage::

    python benchmarks/parquet_layouts.py --out benchmarks/results/issue17-parquet-layouts
    python benchmarks/parquet_layouts.py --n 200000    # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from chunking import make_data, per_iteration, to_model  # noqa: E402


def _table(rows: np.ndarray):
    import pyarrow as pa

    return pa.table({f"f{j}": rows[:, j] for j in range(rows.shape[1])})


def write_files(root: Path, X: np.ndarray, rows: int) -> str:
    """``X`` as files of ``rows`` rows each in ``root/files-{rows}``; returns that path."""
    import pyarrow.parquet as pq

    d = root / f"files-{rows}"
    d.mkdir()
    for i, start in enumerate(range(0, len(X), rows)):
        pq.write_table(_table(X[start:start + rows]), d / f"part-{i:05d}.parquet")
    return str(d)


def write_layouts(root: Path, X: np.ndarray) -> dict[str, str]:
    import pyarrow.parquet as pq

    n = len(X)
    layouts = {}
    pq.write_table(_table(X), root / "one_group.parquet", row_group_size=n)
    layouts["1 file, 1 row group"] = str(root / "one_group.parquet")
    pq.write_table(_table(X), root / "small_groups.parquet", row_group_size=500)
    layouts[f"1 file, {-(-n // 500):,} row groups of 500"] = str(root / "small_groups.parquet")
    for rows in (500, 50_000):
        layouts[f"{-(-n // rows):,} files of {rows:,} rows"] = write_files(root, X, rows)
    return layouts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--model-iters", type=int, default=3)
    p.add_argument("--timed-iters", type=int, default=12,
                   help="iterations timed per layout and cache (fewer: a quicker run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    from distributed import Client, LocalCluster

    from distgmm.io.sources import ParquetSource

    X, means = make_data(args.n, args.d, args.k)
    results = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as cluster, Client(cluster):
        layouts = write_layouts(Path(tmp), X)
        # the workers' first task imports pyarrow and distgmm: not the first layout's cost
        ParquetSource(list(layouts.values())[-1]).load().X.sum(axis=0).compute()
        for name, path in layouts.items():
            t = time.perf_counter()
            ds = ParquetSource(path).load()
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            ds.X.sum(axis=0).compute()
            raw_s = time.perf_counter() - t
            r = {"layout": name, "load_s": load_s, "partitions": ds.X.numblocks[0],
                 "raw_read_s": raw_s,
                 "persisted_s": per_iteration(ds.X, means, args.n1, args.n2,
                                              args.timed_iters, cache="memory"),
                 "out_of_core_s": per_iteration(ds.X, means, args.n1, args.n2,
                                                args.timed_iters, cache="none"),
                 "model_memory_s": load_s + to_model(ParquetSource(path).load().X, args.k,
                                                     args.model_iters, cache="memory"),
                 "model_none_s": load_s + to_model(ParquetSource(path).load().X, args.k,
                                                   args.model_iters, cache="none")}
            results.append(r)
            print(json.dumps(r), flush=True)
    best_p = min(r["persisted_s"] for r in results)
    best_o = min(r["out_of_core_s"] for r in results)
    lines = ["| layout | partitions | load() s | raw pass s | persisted s/iter | / best "
             "| out of core s/iter | / best | s to a model, cached | out of core |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['layout']} | {r['partitions']} | {r['load_s']:.2f} | "
                     f"{r['raw_read_s']:.2f} | {r['persisted_s']:.3f} | "
                     f"{r['persisted_s'] / best_p:.2f} | {r['out_of_core_s']:.3f} | "
                     f"{r['out_of_core_s'] / best_o:.2f} | {r['model_memory_s']:.2f} | "
                     f"{r['model_none_s']:.2f} |")
    print("\n".join(lines))
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
