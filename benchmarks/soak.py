"""Soak: N fits (default 100) against one long-lived cluster, with scheduler and worker
RSS over time, to tell a leak (steady growth per fit) from fragmentation (a plateau).

The cluster is started as operators start it (`dask scheduler`, `dask worker
--nthreads 1`, on loopback); every fit is a separate `distgmm fit` command against it,
as a scheduler would run nightly jobs. RSS is read with psutil after each fit (worker
RSS: the worker processes, not their nannies; a worker that dies ends the soak).

Usage::

    python benchmarks/soak.py                        # 100 fits
    python benchmarks/soak.py --fits 20 --out benchmarks/results/issue19-soak.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import write_zarr  # noqa: E402  the same generated lake as the sweep benchmark


def start_cluster(workdir: Path, n_workers: int, memory_limit: str):
    """`dask scheduler` + `dask worker` processes; returns (scheduler, workers, file)."""
    bindir = Path(sys.executable).parent
    sfile = workdir / "scheduler.json"
    sched = subprocess.Popen([bindir / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                              "0", "--no-dashboard", "--scheduler-file", sfile],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not sfile.exists():
        time.sleep(0.1)
    workers = subprocess.Popen([bindir / "dask", "worker", "--scheduler-file", sfile,
                                "--nworkers", str(n_workers), "--nthreads", "1",
                                "--memory-limit", memory_limit, "--host", "127.0.0.1",
                                "--no-dashboard"], cwd=workdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from distributed import Client

    with Client(scheduler_file=str(sfile), timeout="60s") as c:
        c.wait_for_workers(n_workers, timeout=120)
    return sched, workers, sfile


def worker_pids(sfile) -> list[int]:
    """The worker processes' pids, asked of the workers themselves."""
    from distributed import Client

    with Client(scheduler_file=str(sfile), timeout="60s") as c:
        return sorted(c.run(os.getpid).values())


def rss_mib(sched, pids: list[int]) -> tuple[float, list[float]]:
    """Scheduler RSS and each worker process's RSS, in MiB."""
    import psutil

    mib = 2.0 ** 20
    return (psutil.Process(sched.pid).memory_info().rss / mib,
            [psutil.Process(p).memory_info().rss / mib for p in pids])


def slope(xs, ys) -> float:
    """Least-squares MiB per fit."""
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0]) if len(
        xs) > 1 else float("nan")


def _report(rows, args, wall) -> str:
    fits = [r[0] for r in rows]
    sched = [r[1] for r in rows]
    work = [sum(r[2]) / max(1, len(r[2])) for r in rows]
    half = len(rows) // 2
    lines = [
        f"# Soak: {args.fits} fits against one cluster",
        "",
        f"{args.rows} x {args.features} Zarr, k={args.k}, {args.iters} iterations each, "
        f"`--cache {args.cache}`, {args.workers} `dask worker --nthreads 1 --memory-limit "
        f"{args.memory_limit}`; each fit a separate `distgmm fit` command; {wall:.0f} s in "
        "all. RSS in MiB after the fit.",
        "",
        "| fit | scheduler RSS | worker RSS (each) | fit seconds |",
        "|---|---|---|---|",
    ]
    for fit, s, ws, sec in rows:
        if fit in (1, 2, 3) or fit % args.every == 0 or fit == args.fits:
            lines.append(f"| {fit} | {s:.1f} | {', '.join(f'{w:.1f}' for w in ws)} | "
                         f"{sec:.1f} |")
    lines += [
        "",
        "| | scheduler | worker (mean) |",
        "|---|---|---|",
        f"| after fit 1 | {sched[0]:.1f} | {work[0]:.1f} |",
        f"| after fit {fits[-1]} | {sched[-1]:.1f} | {work[-1]:.1f} |",
        f"| growth per fit, all fits (MiB) | {slope(fits, sched):+.3f} | "
        f"{slope(fits, work):+.3f} |",
        f"| growth per fit, second half (MiB) | {slope(fits[half:], sched[half:]):+.3f} | "
        f"{slope(fits[half:], work[half:]):+.3f} |",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fits", type=int, default=100)
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--cache", default="none")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--every", type=int, default=10, help="Table row every N fits.")
    p.add_argument("--out", help="Write the markdown report here too.")
    args = p.parse_args(argv)
    distgmm = Path(sys.executable).parent / "distgmm"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = str(tmp / "x.zarr")
        write_zarr(data, args.rows, args.features, args.k, 50_000)
        sched, workers, sfile = start_cluster(tmp, args.workers, args.memory_limit)
        pids = worker_pids(sfile)  # asked once: a client per fit would perturb the RSS
        rows, t_all = [], time.perf_counter()
        try:
            for i in range(1, args.fits + 1):
                t0 = time.perf_counter()
                r = subprocess.run(
                    [distgmm, "fit", data, "-k", str(args.k), "-o", tmp / "out",
                     "--overwrite", "--max-iter", str(args.iters), "--tol", "0",
                     "--cache", args.cache, "--random-state", str(i), "--quiet",
                     "--address", str(sfile)], capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stderr, file=sys.stderr)
                    return r.returncode
                s, ws = rss_mib(sched, pids)
                rows.append((i, s, ws, time.perf_counter() - t0))
                print(f"fit {i}: scheduler {s:.1f} MiB, workers "
                      f"{', '.join(f'{w:.1f}' for w in ws)} MiB", flush=True)
        finally:
            for proc in (workers, sched):
                proc.terminate()
                proc.wait(timeout=30)
        report = _report(rows, args, time.perf_counter() - t_all)
    print(report)
    if args.out:
        Path(args.out).write_text(report + os.linesep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
