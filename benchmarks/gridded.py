"""Per-iteration time of EM on a gridded Zarr store vs the same rows as a 2-D Zarr array.

Writes a (time, depth, y, x) cube of two variables with xarray (Zarr v3, chunked along
time and space: every chunk holds all depths), and the same profiles as a 2-D
(rows x features) Zarr array with as many row chunks as the cube has row chunks after
merging. Fits both on ``LocalCluster(n_workers=2, threads_per_worker=1)`` from the same
start, alternating A/B ``--repeats`` times, with the data re-read from the store on
every iteration (``cache="none"``: the stacking is on the path of every pass) and
persisted (``cache="memory"``), and prints the seconds per EM iteration (median of a
fit's iterations; the fastest and the median fit over the repeats) and their ratio
gridded / 2-D (target: within 1.3x). On a machine shared with other work the fastest
fit is the steadier figure.

Usage::

    python benchmarks/gridded.py --time 4 --depth 10 --ny 200 --nx 200 --out \\
        benchmarks/results/gridded
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np


def write_stores(root: Path, t: int, d: int, ny: int, nx: int, chunk: int):
    """The cube (xarray, v3) and the same rows as a 2-D array; returns both paths."""
    import xarray as xr
    import zarr

    from distgmm.io.sources import GriddedSource

    rng = np.random.default_rng(0)
    mass = (np.arange(nx) > nx // 2)[None, None, None, :]
    temp = np.where(mass, 15.0, 8.0) + rng.normal(0, 1, (t, d, ny, nx))
    salt = np.where(mass, 35.0, 34.0) + rng.normal(0, 0.2, (t, d, ny, nx))
    dims = ("time", "depth", "y", "x")
    ds = xr.Dataset({"temp": (dims, temp), "salt": (dims, salt)},
                    coords={"depth": np.arange(d) * 10.0})
    cube = root / "cube.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in v3's spec
        ds.chunk({"time": 1, "depth": -1, "y": chunk, "x": chunk}).to_zarr(
            cube, zarr_format=3)
    data = GriddedSource(str(cube), ("temp", "salt"), "depth").load()
    flat = root / "flat.zarr"
    # 2-D store chunks of as many rows as a cube chunk (as many chunks to decode), the
    # same rows in the same order
    z = zarr.create_array(str(flat), shape=data.X.shape, dtype="f8",
                          chunks=(chunk * chunk, data.X.shape[1]))
    z[:] = data.X.compute()
    return str(cube), str(flat), data


def per_iteration(X, start: dict, iters: int, cache: str) -> float:
    """Median seconds per EM iteration of one fit."""
    from distgmm import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(2, covariance_type="full", tol=0, max_iter=iters, cache=cache,
                             **start).fit(X)
    return statistics.median(gm.timings_["iterations"][1:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time", type=int, default=4)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--ny", type=int, default=200)
    p.add_argument("--nx", type=int, default=200)
    p.add_argument("--chunk", type=int, default=50, help="spatial chunk edge")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    from distgmm.io.sources import GriddedSource, open_source

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None) as cluster, Client(cluster):
        cube, flat, data = write_stores(Path(tmp), args.time, args.depth, args.ny,
                                        args.nx, args.chunk)
        grid_X = GriddedSource(cube, ("temp", "salt"), "depth").load().X
        flat_X = open_source(flat, chunk_rows=max(grid_X.chunks[0])).load().X
        sample = flat_X[: min(2000, flat_X.shape[0])].compute()
        start = {"means_init": sample[[0, -1]], "weights_init": np.array([0.5, 0.5])}
        rows = []
        for cache in ("none", "memory"):
            times = {"gridded": [], "2-D": []}
            for _ in range(args.repeats):  # alternated: load drifts hit both alike
                times["gridded"].append(per_iteration(grid_X, start, args.iters, cache))
                times["2-D"].append(per_iteration(flat_X, start, args.iters, cache))
            g, f = min(times["gridded"]), min(times["2-D"])
            gm, fm = statistics.median(times["gridded"]), statistics.median(times["2-D"])
            rows.append({"cache": cache, "gridded_s": g, "flat_s": f, "ratio": g / f,
                         "gridded_median_s": gm, "flat_median_s": fm,
                         "median_ratio": gm / fm,
                         "rows": int(grid_X.shape[0]), "features": int(grid_X.shape[1]),
                         "row_chunks": len(grid_X.chunks[0]),
                         "flat_row_chunks": len(flat_X.chunks[0]),
                         "source_blocks": len(data.grid.block_rows),
                         "cube_chunks": 2 * args.time * -(-args.ny // args.chunk)
                         * -(-args.nx // args.chunk)})
    table = ["| cache | rows x features | row chunks gridded / 2-D (store chunks read) | "
             "gridded s/iter | 2-D s/iter | ratio (fastest) | ratio (median) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['cache']} | {r['rows']} x {r['features']} | {r['row_chunks']} / "
                     f"{r['flat_row_chunks']} ({r['cube_chunks']}) | {r['gridded_s']:.4f} | "
                     f"{r['flat_s']:.4f} | {r['ratio']:.2f} | {r['median_ratio']:.2f} |")
    print("\n".join(table))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=2))
        Path(args.out).with_suffix(".md").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
