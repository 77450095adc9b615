"""Peak worker memory of an out-of-core fit on a gridded store, as the grid grows.

An xarray-written (time, depth, y, x) cube with two variables along depth (the
ocean-profile case of ``gridded.py``) is fitted out of core (``cache="none"``: every
pass re-reads the store) with row chunks of a fixed size (``--chunk-size``), for
growing grids. Each worker's peak resident memory (``VmHWM``, restarted before the fit)
is read after the fit. Bounded by the chunk size means: flat as the grid grows.

Usage::

    python benchmarks/gridded_memory.py --out benchmarks/results/gridded-memory
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gridded import write_stores  # noqa: E402  the same cube as the speed benchmark
from scaling import _peak_rss_mib, _reset_peak  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edges", type=int, action="append", help="grid edge (y = x)")
    p.add_argument("--chunk-size", type=int, default=8 << 20, help="bytes per row chunk")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    edges = args.edges or [100, 200, 400]
    from distributed import Client, LocalCluster

    from distgmm import GaussianMixture
    from distgmm.io.sources import GriddedSource

    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for edge in edges:
            with tempfile.TemporaryDirectory() as tmp:
                cube, _, _ = write_stores(Path(tmp), 4, 10, edge, edge, 50)
                X = GriddedSource(cube, ("temp", "salt"), "depth",
                                  chunk_bytes=args.chunk_size).load().X
                client.run(_reset_peak)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    GaussianMixture(2, covariance_type="full", max_iter=4, tol=0,
                                    cache="none", init_params="random_from_data",
                                    random_state=0).fit(X)
                peaks = sorted(client.run(_peak_rss_mib).values())
                r = {"grid": f"4 x 10 x {edge} x {edge}", "rows": int(X.shape[0]),
                     "features": int(X.shape[1]), "data_mib": X.nbytes / 2**20,
                     "row_chunks": len(X.chunks[0]),
                     "chunk_mib": max(X.chunks[0]) * X.shape[1] * 8 / 2**20,
                     "peak_worker_mib": peaks}
                rows.append(r)
                print(json.dumps(r), flush=True)
    lines = ["| grid (time x depth x y x x) | rows x features | data MiB | row chunks "
             "(largest MiB) | peak worker MiB |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['grid']} | {r['rows']} x {r['features']} | {r['data_mib']:.0f} | "
                     f"{r['row_chunks']} ({r['chunk_mib']:.1f}) | "
                     f"{', '.join(f'{m:.0f}' for m in r['peak_worker_mib'])} |")
    print("\n".join(lines))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
        Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
