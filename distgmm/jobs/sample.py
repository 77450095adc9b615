"""``distgmm sample``: draw rows from a saved model on the cluster and publish them.

The rows are drawn chunk by chunk by the workers (:mod:`distgmm.parallel.sample`) and
written from there (:mod:`distgmm.io.samples`) into a staging location renamed into
place (:mod:`distgmm.io.publish`): the output holds the whole sample or nothing, and
nothing of the sample's size passes through this process.
"""

from __future__ import annotations

import contextlib
import time

from ..bayesian import load_model  # either kind of model
from ..io.publish import Publication
from ..io.samples import sample_format, sample_writes
from ..numerics.sampling import seed_entropy
from ..parallel.sample import default_chunk_rows, sample_mixture
from .cluster import connect
from .compute import compute
from .events import Reporter


def sample_job(model_path: str, n_samples: int, output: str, *, fmt: str = "auto",
               random_state: int | None = 0, component: bool = False,
               chunk_rows: int | None = None, overwrite: bool = False,
               storage_options: dict | None = None, cluster: dict | None = None,
               reporter: Reporter | None = None, client=None) -> dict:
    """Draw ``n_samples`` rows from the model at ``model_path`` and publish them.

    Parameters
    ----------
    model_path : str
        A saved model directory (or a run's output holding ``model/``).
    n_samples : int
    output : str
        ``OUT.zarr`` or ``OUT.parquet`` (or any name, with ``fmt``).
    fmt : {"auto", "zarr", "parquet"}
    random_state : int or None
        The same seed gives the same rows whatever ``chunk_rows``.
    component : bool
        Also write each row's component.
    chunk_rows : int, optional
        Rows per chunk (default: about 64 MiB of rows).
    overwrite : bool
    storage_options : dict, optional
    cluster : dict, optional
        The cluster section (address, workers) when no ``client`` is given.
    reporter : Reporter, optional
    client : distributed.Client, optional

    Returns
    -------
    dict
        What was written: rows, features, chunks, format, seed, seconds.
    """
    reporter = reporter or Reporter(quiet=True)
    t0 = time.perf_counter()
    fmt = sample_format(output, fmt)
    model = load_model(model_path, storage_options=storage_options)
    entropy = seed_entropy(random_state)
    rows = default_chunk_rows(model.means_.shape[1]) if chunk_rows is None else chunk_rows
    X, comp = sample_mixture(model, n_samples, random_state=entropy, chunk_rows=rows)
    # no _SUCCESS inside a Zarr store (zarr warns about the stray file); the rename is
    # what makes the output atomic
    pub = Publication(output, overwrite=overwrite, marker=fmt == "parquet",
                      storage_options=storage_options)
    pub.check()
    names = getattr(model, "feature_names_in_", None)
    summary = {"n_samples": int(n_samples), "n_features": int(X.shape[1]),
               "n_chunks": int(X.numblocks[0]), "chunk_rows": int(rows), "format": fmt,
               "random_state": entropy, "component": bool(component), "model": model_path}
    with _cluster(cluster or {}, client, reporter) as client, pub:
        writes = sample_writes(X, comp if component else None, pub.staging_url, fmt,
                               feature_names=None if names is None else list(names),
                               attrs=summary, storage_options=storage_options)
        reporter.event("sample", f"drawing {n_samples} rows in {X.numblocks[0]} chunks")
        compute(client, writes, reporter, "sampling")
    summary["seconds"] = time.perf_counter() - t0
    reporter.event("published", f"published {output}", path=output)
    return summary


def _cluster(spec_cluster: dict, client, reporter: Reporter):
    if client is not None:
        return contextlib.nullcontext(client)
    # the stall watchdog is the fit's and predict's, not a connection setting
    spec_cluster = {k: v for k, v in spec_cluster.items() if k != "stall_timeout"}
    return connect(reporter=reporter, **spec_cluster)
