"""Liveness: a driver-side watchdog that says why a pass makes no progress, and stops it.

It polls the scheduler through public ``Client`` calls (``scheduler_info``,
``processing``) from a thread. Progress is any change in the set of tasks the
scheduler has assigned to workers (a task finishing leaves it). While nothing moves it
prints a line every ``every`` seconds saying why (workers paused by memory, no workers,
a worker lost); after ``timeout`` seconds it interrupts the driver: workers paused by
memory are a memory sizing failure (exit 78), anything else a retryable stall (75).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from .events import Reporter
from .failures import MEMORY_KNOBS, ClusterStalled, MemorySizingError
from .memory_deaths import diagnosed

# a task holds its chunk, the decoded copy and per-row temporaries: a chunk that takes
# more than this share of a worker's memory (per thread) cannot run
CHUNK_SHARE = 0.5


def _fmt(n) -> str:
    from dask.utils import format_bytes

    return format_bytes(int(n or 0))


def largest_chunk_bytes(X) -> int:
    """Bytes of the largest row chunk of a 2-D dask array."""
    return int(max(X.chunks[0], default=0) * X.shape[1] * X.dtype.itemsize)


def check_chunk_fits(client, chunk_bytes: int | None) -> None:
    """Refuse a chunk size no worker with a known memory limit can hold.

    Raises
    ------
    MemorySizingError
    """
    if not chunk_bytes:
        return
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # the scheduler is gone: the pass reports it
        return
    for addr, w in workers.items():
        limit, nthreads = w.get("memory_limit") or 0, max(1, w.get("nthreads") or 1)
        if limit and chunk_bytes * nthreads > CHUNK_SHARE * limit:
            raise MemorySizingError(
                f"chunks of {_fmt(chunk_bytes)} cannot fit worker {addr} ({nthreads} "
                f"thread(s), memory limit {_fmt(limit)}): use --chunk-size "
                f"{_fmt(CHUNK_SHARE * limit / nthreads)} or less, or give the workers "
                "more memory (--memory-limit / dask worker --memory-limit)")


def _paused_text(paused: dict, chunk_bytes: int | None) -> str:
    parts = [f"{addr} at {_fmt(w.get('metrics', {}).get('memory'))} of "
             f"{_fmt(w.get('memory_limit'))}" for addr, w in sorted(paused.items())]
    chunk = f" with chunks of {_fmt(chunk_bytes)}" if chunk_bytes else ""
    return (f"{len(paused)} worker(s) paused by memory ({'; '.join(parts)}){chunk}: "
            f"{MEMORY_KNOBS}")


class Watchdog:
    """Watch a client's passes; see the module docstring.

    Parameters
    ----------
    client : distributed.Client
    timeout : float
        Seconds without progress before the run is stopped.
    reporter : Reporter
    chunk_bytes : int, optional
        The input's chunk size, for the messages.
    """

    def __init__(self, client, timeout: float, reporter: Reporter,
                 chunk_bytes: int | None = None):
        self.client, self.timeout, self.reporter = client, float(timeout), reporter
        self.chunk_bytes = chunk_bytes
        self.poll = min(2.0, max(0.2, self.timeout / 10))
        self.every = min(30.0, max(1.0, self.timeout / 3))
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._interrupt = threading.current_thread() is threading.main_thread()
        self._thread = threading.Thread(target=self._run, name="distgmm-watchdog",
                                        daemon=True)

    def __enter__(self) -> Watchdog:
        self._installed, self._saved_sigint = False, None
        if self._interrupt and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # SIGINT ignored (a job started in the background by a non-interactive
            # shell, or under nohup): Python would not raise on our signal either, and
            # the driver would wait forever. Ignore it as before unless we have failed.
            self._saved_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        self._thread.start()
        return self

    def _on_sigint(self, signum, frame) -> None:
        if self.failure is not None:
            raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._stop.set()
            self._thread.join(timeout=10)
        except KeyboardInterrupt:  # we failed while the block was ending
            if self.failure is None:
                raise
            exc_type = KeyboardInterrupt
        finally:
            if self._installed:
                signal.signal(signal.SIGINT, self._saved_sigint)
        if self.failure is not None and exc_type is not None:
            raise self.failure from None
        return False

    def _snapshot(self):
        info = self.client.scheduler_info()
        processing = self.client.processing()
        keys = frozenset(str(k) for ks in processing.values() for k in ks)
        return info.get("workers", {}), keys

    def _why(self, workers: dict, keys: frozenset) -> tuple[str, bool] | None:
        """Why nothing moves (and whether it is memory), None if nothing waits."""
        if not workers:
            address = getattr(self.client.scheduler, "address", "the scheduler")
            return f"no workers are connected to {address}", False
        paused = {a: w for a, w in workers.items() if w.get("status") == "paused"}
        if paused and (keys or len(paused) == len(workers)):  # all paused: none can start
            return _paused_text(paused, self.chunk_bytes), True
        if not keys:
            return None
        return (f"{len(keys)} task(s) assigned to {len(workers)} worker(s), none "
                "finished"), False

    def _run(self) -> None:
        last_keys, last_workers = None, None
        since = next_line = time.monotonic()
        while not self._stop.wait(self.poll):
            try:
                workers, keys = self._snapshot()
            except Exception:  # the scheduler is gone: the pass fails on its own
                continue
            now = time.monotonic()
            if last_workers is not None:
                for addr in sorted(set(last_workers) - set(workers)):
                    self.reporter.event("worker-lost", f"worker {addr} left the cluster; "
                                        f"{len(workers)} remain", worker=addr,
                                        remaining=len(workers))
            why = self._why(workers, keys)
            if why is None or (keys != last_keys and workers):
                since = next_line = now + 0.0
            last_keys, last_workers = keys, workers
            if why is None or now - since < self.every:
                continue
            if now >= next_line:
                self.reporter.event("stall", f"waiting for workers: {why[0]} (no progress "
                                    f"for {now - since:.0f} s; stopping after "
                                    f"{self.timeout:.0f} s)", reason=why[0], memory=why[1],
                                    seconds=round(now - since, 1))
                next_line = now + self.every
            if now - since >= self.timeout:
                self._fail(why)
                return

    def _fail(self, why: tuple[str, bool]) -> None:
        text = f"no progress for {self.timeout:.0f} s: {why[0]}"
        self.failure = (MemorySizingError(text) if why[1] else ClusterStalled(
            f"{text}; rerunning is safe, it resumes from the checkpoint"))
        if self._interrupt:  # wake the driver's wait at once (raises in the main thread)
            signal.pthread_kill(self._main, signal.SIGINT)


@contextlib.contextmanager
def watched(client, reporter: Reporter, *, stall_timeout: float,
            chunk_bytes: int | None = None):
    """Run the block under a watchdog, with KilledWorkers caused by memory reported as
    memory sizing failures."""
    with diagnosed(client, chunk_bytes), Watchdog(client, stall_timeout, reporter,
                                                  chunk_bytes):
        yield
