"""Which Dask cluster a run uses: a given address, or an embedded local cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from .events import Reporter


class ClusterUnavailable(ConnectionError):
    """The scheduler cannot be reached (a transient failure: retry later)."""


@contextlib.contextmanager
def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int | None = None, memory_limit: str | None = None,
            reporter: Reporter | None = None):
    """A ``distributed.Client`` for the run, closed afterwards.

    With ``address`` (or ``DASK_SCHEDULER_ADDRESS`` set) connect to that scheduler;
    otherwise start a ``LocalCluster`` of worker processes bound to 127.0.0.1 with its
    dashboard on loopback.

    Parameters
    ----------
    address : str, optional
        ``tcp://host:8786``, ``tls://...``, or a scheduler file path.
    n_workers, threads_per_worker, memory_limit
        Embedded cluster only (``memory_limit`` per worker, e.g. ``"4GiB"``).
    reporter : Reporter, optional
    """
    import dask
    from distributed import Client, LocalCluster

    reporter = reporter or Reporter(quiet=True)
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        local = [k for k, v in (("n_workers", n_workers), ("memory_limit", memory_limit),
                                ("threads_per_worker", threads_per_worker)) if v is not None]
        if local:
            raise ValueError(
                f"{', '.join(local)} only apply to the embedded cluster, not to the "
                f"scheduler at {address}: set them where that cluster is started."
            )
        kwargs = {"scheduler_file": address} if os.path.isfile(address) else {"address": address}
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            client = Client(**kwargs, timeout=timeout)
        except OSError as e:
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler at {address} ({e}): check the address "
                "and that the scheduler is running"
            ) from None
        with client:
            reporter.event("cluster", f"connected to {client.scheduler.address}, dashboard "
                           f"{client.dashboard_link}", address=client.scheduler.address,
                           dashboard=client.dashboard_link)
            yield client
        return
    options = {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
               "memory_limit": memory_limit}
    with warnings.catch_warnings():
        # 8787 taken (another run): distributed picks a free port; we print the link
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            host="127.0.0.1", dashboard_address="127.0.0.1:8787", processes=True,
            silence_logs=logging.CRITICAL,  # task errors reach the client as exceptions
            **{k: v for k, v in options.items() if v is not None},
        )
    with cluster, Client(cluster) as client:
        n = len(client.scheduler_info()["workers"])
        reporter.event("cluster", f"embedded local cluster: {n} workers, dashboard "
                       f"{client.dashboard_link}", workers=n, dashboard=client.dashboard_link)
        yield client
