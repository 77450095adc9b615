"""Computing a job's pass on the cluster, and draining it cleanly when a task fails."""

from __future__ import annotations

import time
import warnings

from .events import Reporter


def compute(client, collections: list, reporter: Reporter, label: str) -> list:
    """Compute on the cluster, with a progress bar when attached to a terminal.

    If a task fails, the rest are cancelled and waited for before the error goes on,
    so no straggling write lands in a staging directory that is being removed.
    """
    with warnings.catch_warnings():
        # Parquet results (expressions) and array scores share the pass on purpose
        warnings.filterwarnings("ignore", message="Computing mixed collections")
        futures = client.compute(collections)
    try:
        reporter.wait(futures, label)
        return client.gather(futures)
    except Exception:
        try:
            _drain(client, collections, futures)
        except Exception:  # never hide the task's own error
            pass
        raise


_ACTIVE = ("executing", "long-running", "ready", "constrained", "waiting", "fetch", "flight")


def _executing(dask_worker) -> list:
    """Keys a worker is running or about to run (cancelled tasks run to the end)."""
    return [str(key) for key, ts in dask_worker.state.tasks.items() if ts.state in _ACTIVE]


def _drain(client, collections: list, futures: list, timeout: float = 60.0) -> None:
    """Cancel ``futures`` and wait until no task of ``collections`` is running."""
    keys = {str(k) for c in collections for k in c.__dask_graph__()}
    client.cancel(futures, force=True)
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < 5:  # idle on 5 polls in a row
        try:
            running = {k for ks in client.run(_executing).values() for k in ks}
        except OSError:
            return
        quiet = 0 if running & keys else quiet + 1
        time.sleep(0.05)
