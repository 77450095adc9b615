"""Which Dask cluster a run uses: a given address, or an embedded local cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from .events import Reporter

HUGE_PAGES = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
"""Added to the embedded cluster's worker environment (unless GLIBC_TUNABLES is set).

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so every large
buffer (a chunk read, its compressed bytes, its decoded rows) is a fresh ``mmap`` whose
4 KiB pages each fault in and are zeroed: reading a 1e6 x 16 Zarr array of 16 MB chunks
took 0.25 s in one process with that variable against 0.13 s without. glibc (2.35 or
later) asked for transparent huge pages (THP in ``madvise`` mode) takes it to 0.17 s, and
memory is still returned when freed. Other C libraries ignore the variable."""


def worker_environ() -> dict:
    """What the embedded cluster adds to its workers' environment (:data:`HUGE_PAGES`),
    merged into Dask's ``distributed.nanny.pre-spawn-environ``; nothing when the user
    set ``GLIBC_TUNABLES`` in the environment or in that Dask setting."""
    import dask
    import distributed  # noqa: F401  (registers distributed's config defaults)

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    if "GLIBC_TUNABLES" in os.environ or "GLIBC_TUNABLES" in environ:
        return environ
    return {**environ, **HUGE_PAGES}


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
    before = os.environ.get("GLIBC_TUNABLES")
    try:
        with warnings.catch_warnings(), dask.config.set(
                {"distributed.nanny.pre-spawn-environ": worker_environ()}):
            # 8787 taken (another run): distributed picks a free port; we print the link
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(
                host="127.0.0.1", dashboard_address="127.0.0.1:8787", processes=True,
                silence_logs=logging.CRITICAL,  # task errors reach the client as exceptions
                **{k: v for k, v in options.items() if v is not None},
            )
    finally:  # the nanny sets it in this process to spawn workers (and again at each
        # restart, when it stays: harmless, as the workers get it either way)
        if before is None:
            os.environ.pop("GLIBC_TUNABLES", None)
    with cluster, Client(cluster) as client:
        n = len(client.scheduler_info()["workers"])
        reporter.event("cluster", f"embedded local cluster: {n} workers, dashboard "
                       f"{client.dashboard_link}", workers=n, dashboard=client.dashboard_link)
        yield client
