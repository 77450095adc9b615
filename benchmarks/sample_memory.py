"""Driver memory while ``distgmm sample`` draws and writes n rows (issue 15 part 3).

For each n (1e5, 1e6, 1e7 by default) and format, a fitted model (8 features, 8 full
components) is sampled with :func:`distgmm.jobs.sample.sample_job` on a
``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes; the scheduler
runs in this process, as with the CLI's embedded cluster) into a temporary directory.
Reported per run:

- ``rows_mib``: the size of the sample (n x d float64), what a driver-side sample holds;
- ``driver_peak_mib``: this process's peak RSS during the run, sampled every 10 ms by a
  thread (psutil), and ``driver_before_mib`` its RSS just before;
- ``growth_mib``: peak minus before; flat in n means nothing of the sample's size
  passes through the driver (only the graph: one task per chunk);
- ``seconds`` and ``chunks``.

Usage::

    python benchmarks/sample_memory.py                       # 1e5, 1e6, 1e7; zarr, parquet
    python benchmarks/sample_memory.py --rows 10000000 --format zarr \\
        --out benchmarks/results/issue15-sample
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MIB = 1 << 20


class PeakRSS:
    """This process's peak RSS while the ``with`` block runs (sampled every 10 ms)."""

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self.before = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def fitted_model(d: int = 8, k: int = 8):
    from distgmm import GaussianMixture

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=5.0, size=(k, d))
    X = centers[rng.integers(0, k, 20_000)] + rng.normal(size=(20_000, d))
    return GaussianMixture(k, random_state=0).fit(X)


def run(rows: list[int], formats: list[str], chunk_rows: int | None) -> list[dict]:
    from distributed import Client, LocalCluster

    from distgmm.jobs.sample import sample_job

    out = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None) as cluster, Client(cluster) as client:
        model = fitted_model()
        model.save(f"{tmp}/model")
        sample_job(f"{tmp}/model", 1000, f"{tmp}/warm.zarr", client=client)  # warm up
        for n in rows:
            for fmt in formats:
                target = f"{tmp}/s-{n}.{fmt}"
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    summary = sample_job(f"{tmp}/model", n, target, component=True,
                                         chunk_rows=chunk_rows, client=client)
                    seconds = time.perf_counter() - t0
                out.append({"n": n, "format": fmt, "chunks": summary["n_chunks"],
                            "rows_mib": n * 8 * 8 / MIB, "seconds": seconds,
                            "driver_before_mib": mem.before / MIB,
                            "driver_peak_mib": mem.peak / MIB,
                            "growth_mib": (mem.peak - mem.before) / MIB})
                print(json.dumps(out[-1]), flush=True)
                import shutil

                shutil.rmtree(target, ignore_errors=True)
    return out


def table(results: list[dict]) -> str:
    lines = ["| n | format | chunks | sample MiB | seconds | driver RSS before MiB | "
             "driver peak MiB | growth MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['format']} | {r['chunks']} | {r['rows_mib']:.0f} | "
                     f"{r['seconds']:.1f} | {r['driver_before_mib']:.0f} | "
                     f"{r['driver_peak_mib']:.0f} | {r['growth_mib']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--format", action="append", choices=["zarr", "parquet"])
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    results = run(args.rows or [100_000, 1_000_000, 10_000_000],
                  args.format or ["zarr", "parquet"], args.chunk_rows)
    print(table(results))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1))
        Path(args.out).with_suffix(".md").write_text(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
