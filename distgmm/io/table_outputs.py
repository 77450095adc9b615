"""Per-row results committed to a table: a Delta Lake table or an Icechunk repository.

Delta: the workers write one Parquet file per row chunk into the table's directory
(invisible to readers: no log entry names them yet); once the pass is done, the client
commits them all in ONE transaction. With ``partition={"date": "2026-11-22"}`` the
commit replaces exactly that partition (an overwrite with a partition filter), others
untouched, so readers see the old day or the new day, never half of one. The commit's
custom metadata names the job and its fingerprints; a rerun whose partition was last
committed by the same job on the same input commits nothing.

Icechunk: the Zarr-shaped results are written as today into the staging directory by
the scoring pass, then copied into the repository's ``main`` branch and committed once,
with a message naming the job and its fingerprint.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from .outputs import PREDICTIONS, PendingPredictions, prediction_table

META_PREFIX = "distgmm."


@dataclass(frozen=True)
class TableTarget:
    """Where and how results are committed.

    Attributes
    ----------
    url : str
        The Delta table or Icechunk repository.
    partition : dict
        Partition column -> value this run replaces (Delta only).
    identity : dict
        ``name``, ``fingerprint`` and ``input_fingerprint`` of the job, recorded in
        the commit (empty for ``distgmm predict``: every run commits).
    storage_options : dict
    """

    url: str
    partition: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    storage_options: dict = field(default_factory=dict)

    def commit_metadata(self) -> dict:
        meta = {f"{META_PREFIX}{k}": str(v) for k, v in self.identity.items() if v}
        meta[f"{META_PREFIX}partition"] = json.dumps(self.partition, sort_keys=True)
        return meta


def _delta_table(target: TableTarget):
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(target.url, storage_options=target.storage_options
                                    or None):
        return None
    return DeltaTable(target.url, storage_options=target.storage_options or None)


def delta_already_committed(target: TableTarget) -> int | None:
    """The version holding this job's commit of this partition, if it is the latest
    commit of that partition and the job and input are the same (else None)."""
    if not target.identity.get("fingerprint"):
        return None
    dt = _delta_table(target)
    if dt is None:
        return None
    part = json.dumps(target.partition, sort_keys=True)
    for commit in dt.history():  # newest first
        if commit.get(f"{META_PREFIX}partition") != part:
            continue
        same = all(commit.get(f"{META_PREFIX}{k}") == str(target.identity.get(k))
                   for k in ("fingerprint", "input_fingerprint"))
        return int(commit["version"]) if same else None
    return None


def _write_file(part, table_url: str, directory: str, storage_options: dict):
    """One row chunk as a Parquet file in the table directory; a one-row frame saying
    what its add action needs."""
    import fsspec
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(part, preserve_index=False)
    name = f"part-{uuid.uuid4().hex}.parquet"
    rel = posixpath.join(directory, name) if directory else name
    fs, root = fsspec.core.url_to_fs(table_url, **storage_options)
    path = posixpath.join(root, rel)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)
    return pd.DataFrame({"path": [rel], "size": [int(fs.size(path))],
                         "rows": [table.num_rows],
                         "schema": [table.schema.serialize().to_pybytes()]})


def delta_writes(pred, columns: list[str], target: TableTarget) -> list:
    """Lazy per-chunk file writes of ``pred[columns]``: one expression with the scoring
    statistics (one pass), computing to one row per written file."""
    import pandas as pd

    directory = "/".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                         for k, v in target.partition.items())
    meta = pd.DataFrame({"path": pd.Series([], dtype=object),
                         "size": pd.Series([], dtype="int64"),
                         "rows": pd.Series([], dtype="int64"),
                         "schema": pd.Series([], dtype=object)})
    return [pred[columns].map_partitions(_write_file, target.url, directory,
                                         dict(target.storage_options), meta=meta,
                                         enforce_metadata=False)]


def delta_commit(target: TableTarget, files) -> dict:
    """Commit the written files (the computed :func:`delta_writes`) as one transaction;
    returns what was committed."""
    import pyarrow as pa
    from deltalake import CommitProperties
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import AddAction, create_table_with_add_actions

    written = files.to_dict("records")
    # a chunk whose text column is all null wrote it as the null type: promote
    schema = pa.unify_schemas([pa.ipc.read_schema(pa.py_buffer(w["schema"]))
                               for w in written], promote_options="permissive")
    now = int(time.time() * 1000)
    parts = {k: str(v) for k, v in target.partition.items()}
    actions = [AddAction(w["path"], int(w["size"]), parts, now, True,
                         json.dumps({"numRecords": int(w["rows"])})) for w in written]
    for k in parts:
        schema = schema.append(pa.field(k, pa.string()))
    schema = DeltaSchema.from_arrow(schema)
    props = CommitProperties(custom_metadata=target.commit_metadata())
    dt = _delta_table(target)
    if dt is None:
        create_table_with_add_actions(target.url, schema, actions, mode="overwrite",
                                      partition_by=list(parts) or None,
                                      storage_options=target.storage_options or None,
                                      commit_properties=props)
    else:
        filters = [(k, "=", v) for k, v in parts.items()] or None
        dt.create_write_transaction(actions, "overwrite", schema,
                                    partition_by=list(parts) or None,
                                    partition_filters=filters, commit_properties=props)
    version = _delta_table(target).version()
    return {"format": "delta", "url": target.url, "version": version,
            "partition": parts, "files": len(actions), "committed": True}


def _icechunk_repo(target: TableTarget, create: bool):
    import icechunk

    from .sources.icechunk import icechunk_storage

    storage = icechunk_storage(target.url, target.storage_options)
    if icechunk.Repository.exists(storage):
        return icechunk.Repository.open(storage)
    return icechunk.Repository.create(storage) if create else None


def icechunk_already_committed(target: TableTarget) -> str | None:
    """The tip of ``main`` if its commit is this job's on the same input, else None."""
    if not target.identity.get("fingerprint"):
        return None
    repo = _icechunk_repo(target, create=False)
    if repo is None:
        return None
    tip = next(iter(repo.ancestry(branch="main")))
    meta = tip.metadata or {}
    same = all(meta.get(f"{META_PREFIX}{k}") == str(target.identity.get(k))
               for k in ("fingerprint", "input_fingerprint"))
    return tip.id if same else None


def icechunk_commit(target: TableTarget, zarr_url: str, storage_options: dict | None) -> dict:
    """Copy the Zarr results at ``zarr_url`` into the repository; commit once."""
    import dask.array as da
    import zarr
    from icechunk.dask import store_dask

    repo = _icechunk_repo(target, create=True)
    staged = zarr.open_group(zarr_url, mode="r", storage_options=storage_options or None)
    session = repo.writable_session("main")
    fork = session.fork()
    group = zarr.open_group(fork.store, mode="w")
    group.attrs.update(dict(staged.attrs))
    sources, targets = [], []
    for name, arr in staged.arrays():
        z = group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=arr.chunks)
        sources.append(da.from_zarr(arr))
        targets.append(z)
    if sources:
        session.merge(store_dask(sources=sources, targets=targets))
    ident = target.identity
    message = (f"distgmm job {ident.get('name') or '(unnamed)'} fingerprint "
               f"{ident.get('fingerprint') or '(predict)'}")
    snapshot = session.commit(message, metadata=target.commit_metadata())
    return {"format": "icechunk", "url": target.url, "snapshot": snapshot,
            "committed": True}


def _remove(url: str, storage_options: dict | None) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def table_predictions(fmt: str, dataset, params, staging_url: str, opts,
                      storage_options: dict | None, table: TableTarget | None
                      ) -> PendingPredictions:
    """The lazy prediction pass for ``delta`` or ``icechunk`` results, and its commit."""
    from dataclasses import replace

    from .outputs import _zarr_predictions

    if table is None:
        table = TableTarget(posixpath.join(staging_url, PREDICTIONS[fmt]),
                            storage_options=dict(storage_options or {}))
    if fmt == "icechunk":
        if table.partition:
            raise ValueError("output.partition applies to Delta tables; an Icechunk "
                             "output is one commit of whole arrays: drop the partition.")
        url = posixpath.join(staging_url, PREDICTIONS["zarr"])
        pending = _zarr_predictions(dataset, params, url, replace(opts, format="zarr"),
                                    storage_options)

        def commit(_written):
            tip = icechunk_already_committed(table)
            done = (icechunk_commit(table, url, storage_options) if tip is None else
                    {"format": "icechunk", "url": table.url, "snapshot": tip,
                     "committed": False})
            _remove(url, storage_options)
            return done

        return replace(pending, path=table.url,
                       commit=commit if pending.path else None)
    pred, columns, write_index = prediction_table(dataset, params, opts)
    if write_index:
        pred = pred.reset_index()
        columns = ["row", *columns]
    sizes, total = pred["label"].value_counts(), pred["log_likelihood"].sum()
    flagged = None if opts.outlier_threshold is None else pred["outlier"].sum()
    if not opts.any:
        return PendingPredictions([], total, sizes, None, flagged)
    version = delta_already_committed(table)
    if version is not None:  # this job already committed this partition: no new commit
        return PendingPredictions([], total, sizes, table.url, flagged, commit=lambda _: {
            "format": "delta", "url": table.url, "version": version,
            "partition": table.partition, "committed": False})
    return PendingPredictions(delta_writes(pred, columns, table), total, sizes, table.url,
                              flagged, commit=lambda done: delta_commit(table, done[0]))
