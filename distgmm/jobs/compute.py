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
    except (Exception, KeyboardInterrupt):  # SIGINT/SIGTERM cancel the pass too
        try:
            _drain(client, collections, futures)
        except Exception:  # never hide the task's own error
            pass
        raise


def _running(dask_worker) -> list:
    """Keys running in a worker's threads now.

    ``Worker.active_threads`` (documented: "the keys currently running on active
    threads") holds a task until its function returns, whatever the worker's state
    machine calls it: a cancelled task keeps running to the end, in state
    ``cancelled``, which a list of state names easily misses.
    """
    try:
        return [str(key) for key in tuple(dask_worker.active_threads.values())]
    except RuntimeError:  # changed while copied: ask again on the next poll
        return ["<busy>"]


def _pending(client) -> set:
    """Keys the scheduler still has assigned to workers (queued or running)."""
    return {str(key) for keys in client.processing().values() for key in keys}


def _drain(client, collections: list, futures: list, timeout: float = 60.0) -> None:
    """Cancel ``futures`` and wait until no task of ``collections`` is running."""
    keys = {str(k) for c in collections for k in c.__dask_graph__()}
    client.cancel(futures, force=True)
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < 5:  # idle on 5 polls in a row
        try:
            running = {k for ks in client.run(_running).values() for k in ks}
            running |= _pending(client)
        except OSError:
            return
        quiet = 0 if running & (keys | {"<busy>"}) else quiet + 1
        time.sleep(0.05)
