"""Table sources against plain Parquet on the same rows: planning (``load()``) and one
pass over the data, as same-run ratios.

The same rows are written as a directory of Parquet files, a Delta table and an Iceberg
table (one file per commit, ``--files`` commits), then each source is opened and its
rows summed (threads scheduler, this process). Prints a Markdown table; ``--out`` also
writes it to a file.

    python benchmarks/tables.py --rows 2000000 --files 20 --out benchmarks/results/tables.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _write(root: Path, rows: int, files: int, d: int):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake
    from pyiceberg.catalog import load_catalog

    rng = np.random.default_rng(0)
    props = {"type": "sql", "uri": f"sqlite:///{root}/catalog.db",
             "warehouse": f"file://{root}/warehouse"}
    cat = load_catalog("bench", **props)
    cat.create_namespace("ns")
    (root / "parquet").mkdir()
    table = None
    for i, n in enumerate(np.diff(np.linspace(0, rows, files + 1).astype(int))):
        part = pa.table({f"f{j}": rng.normal(size=n) for j in range(d)})
        pq.write_table(part, root / "parquet" / f"part-{i:04d}.parquet")
        write_deltalake(str(root / "delta"), part, mode="append")
        table = table or cat.create_table("ns.t", schema=part.schema)
        table.append(part)
    return props


def _time(make, repeat: int) -> tuple[float, float]:
    plans, passes = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds = make().load()
        t1 = time.perf_counter()
        ds.X.sum(axis=0).compute(scheduler="threads")
        plans.append(t1 - t0)
        passes.append(time.perf_counter() - t1)
    return statistics.median(plans), statistics.median(passes)


def main(argv=None) -> int:
    from distgmm.io.sources import open_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        props = _write(root, args.rows, args.files, args.features)
        cases = {
            "parquet": lambda: open_source(str(root / "parquet")),
            "delta": lambda: open_source(str(root / "delta")),
            "iceberg": lambda: open_source("iceberg://bench/ns.t", storage_options=props),
        }
        times = {k: _time(make, args.repeat) for k, make in cases.items()}
    base_plan, base_pass = times["parquet"]
    lines = [f"{args.rows} rows x {args.features} features in {args.files} files "
             f"(median of {args.repeat})", "",
             "| source | load() s | pass s | load / parquet | pass / parquet |",
             "|---|---|---|---|---|"]
    for k, (plan, one_pass) in times.items():
        lines.append(f"| {k} | {plan:.3f} | {one_pass:.3f} | {plan / base_plan:.2f} | "
                     f"{one_pass / base_pass:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
