"""Icechunk repositories: a 2-D Zarr array at a branch, a tag or a snapshot id.

The version is resolved once on the client into a read-only session pinned to one
snapshot; its store pickles, so every worker reads the same snapshot even if the branch
moves on during the fit. The snapshot id goes into the description (metrics and the
checkpoint fingerprint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC

from .base import DEFAULT_CHUNK_BYTES, Dataset, as_float, check_numeric_array, chunk_rows


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text.split("`->")[-1].strip()[:200] if "`->" in text else text[:200]


def icechunk_storage(path: str, storage_options: dict | None = None):
    """The ``icechunk`` storage of a local directory or an ``s3://`` / ``gs://`` URL."""
    try:
        import icechunk
    except ImportError as e:
        raise ImportError("Icechunk input needs icechunk: pip install 'distgmm[lake]'.",
                          name=e.name) from None
    opts = dict(storage_options or {})
    if "://" not in path:
        if opts:
            raise ValueError(f"storage_options apply to URLs, not to the local path {path}: "
                             "drop them or give a URL.")
        return icechunk.local_filesystem_storage(os.path.abspath(path))
    scheme, rest = path.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    if scheme == "s3":
        if not opts:
            opts = {"from_env": True}
        return icechunk.s3_storage(bucket=bucket, prefix=prefix or None, **opts)
    if scheme in ("gs", "gcs"):
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None,
                                    **(opts or {"from_env": True}))
    raise ValueError(f"{path}: Icechunk repositories are read from local paths, s3:// or "
                     "gs:// URLs.")


def open_session(path: str, version: str | None = None, snapshot: str | None = None,
                 as_of: str | None = None, storage_options: dict | None = None):
    """A read-only session of the repository at a branch or tag (``version``), a
    snapshot id, or the last snapshot of a branch (default ``main``) before ``as_of``."""
    import icechunk

    if "://" not in path and not os.path.isdir(path):
        raise FileNotFoundError(f"No Icechunk repository at {path}: check the input path.")
    if snapshot is not None and (version is not None or as_of is not None):
        raise ValueError(f"{path}: give a snapshot id, or a branch/tag (and as_of), "
                         "not both.")
    try:
        repo = icechunk.Repository.open(icechunk_storage(path, storage_options))
    except icechunk.IcechunkError as e:
        raise ValueError(f"Cannot open the Icechunk repository {path} "
                         f"({_one_line(e)}).") from None
    try:
        if snapshot is not None:
            return repo.readonly_session(snapshot_id=str(snapshot))
        if as_of is not None:
            from datetime import datetime

            when = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            return repo.readonly_session(branch=version or "main", as_of=when)
        ref = version or "main"
        if ref in repo.list_branches():
            return repo.readonly_session(branch=ref)
        if ref in repo.list_tags():
            return repo.readonly_session(tag=ref)
        raise ValueError(f"{path} has no branch or tag {ref!r}; branches "
                         f"{sorted(repo.list_branches())}, tags {sorted(repo.list_tags())}.")
    except (icechunk.IcechunkError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(path):
            raise
        what = (f"snapshot {snapshot}" if snapshot is not None
                else f"{version or 'main'}" + (f" as of {as_of}" if as_of else ""))
        raise ValueError(f"{path} has no {what} ({_one_line(e)}): pick an existing "
                         "branch, tag or snapshot id.") from None


@dataclass(frozen=True)
class IcechunkSource:
    """A 2-D Zarr array in an Icechunk repository, at one snapshot.

    Parameters
    ----------
    path : str
        The repository (local directory, ``s3://bucket/prefix`` or ``gs://...``).
    array : str, optional
        Path of the array inside the repository's root group (needed when it holds
        several arrays).
    version : str, optional
        A branch or tag name (default ``main``).
    snapshot : str, optional
        A snapshot id (overrides ``version``).
    as_of : str, optional
        The last snapshot of the branch at or before this ISO timestamp.
    storage_options : dict
        Keyword arguments of ``icechunk.s3_storage`` / ``gcs_storage`` for URLs.
    chunk_bytes, chunk_rows
        As for :class:`~distgmm.io.sources.ZarrSource`.
    """

    path: str
    array: str | None = None
    version: str | None = None
    snapshot: str | None = None
    as_of: str | None = None
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_rows: int | None = None

    def load(self) -> Dataset:
        import dask.array as da
        import zarr
        from dask.base import tokenize

        from .zarr import ZarrRows, _arrays_in

        session = open_session(self.path, None if self.version is None else str(self.version),
                               self.snapshot, self.as_of, self.storage_options)
        node = zarr.open(session.store, mode="r")
        where = f"{self.path} (snapshot {session.snapshot_id})"
        if self.array:
            try:
                node = node[self.array]
            except KeyError:
                raise ValueError(f"No array {self.array!r} in {where}; it holds "
                                 f"{_arrays_in(node) or 'no arrays'}: pick one of those.") from None
        if hasattr(node, "members"):
            names = _arrays_in(node)
            if len(names) != 1:
                raise ValueError(f"{where} holds {names or 'no arrays'}: name the array "
                                 "to cluster with --array (or input.array in a job spec).")
            node = node[names[0]]
        check_numeric_array(node.dtype, node.ndim, where)
        rows = self.chunk_rows or chunk_rows(node.shape[1], node.dtype.itemsize,
                                             self.chunk_bytes, node.chunks[0], node.shape[0])
        name = "icechunk-" + tokenize(self.path, self.array, session.snapshot_id, rows)
        X = da.from_array(ZarrRows(node, where), chunks=(rows, node.shape[1]), name=name,
                          asarray=True, inline_array=False)
        desc = {"kind": "icechunk", "path": self.path, "array": self.array,
                "version": self.version, "snapshot": session.snapshot_id,
                "shape": list(node.shape), "dtype": str(node.dtype),
                "store_chunks": list(node.chunks), "chunks": list(X.chunks[0])}
        names = node.attrs.get("feature_names")
        names = tuple(names) if isinstance(names, list) and len(names) == node.shape[1] else None
        return Dataset(as_float(X), names, description=desc)
