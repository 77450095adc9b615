"""Pick the source for a path (or an in-memory array) and its options."""

from __future__ import annotations

import dataclasses
import os
import posixpath

from ...options import INPUT_FORMATS
from .array import ArraySource, NpySource
from .base import Source
from .delta import DeltaSource
from .gridded import GriddedSource
from .iceberg import IcebergSource
from .icechunk import IcechunkSource
from .parquet import ParquetSource
from .zarr import ZarrSource

SOURCES = {"zarr": ZarrSource, "parquet": ParquetSource, "npy": NpySource,
           "delta": DeltaSource, "iceberg": IcebergSource, "icechunk": IcechunkSource}
GRIDDED_OPTIONS = ("variables", "feature_dim", "feature_axis")
"""Options that make Zarr input gridded (:class:`GriddedSource`)."""
_SUFFIXES = {".zarr": "zarr", ".zip": "zarr", ".parquet": "parquet", ".pq": "parquet",
             ".parq": "parquet", ".npy": "npy"}


def _sniff_directory(path: str, names: list[str] | None = None) -> str | None:
    local = names is None
    names = os.listdir(path) if local else names
    # table markers first: a table's data files are Parquet/Zarr too
    if "_delta_log" in names:
        return "delta"
    if {"refs", "snapshots"} <= set(names):
        return "icechunk"
    meta = os.path.join(path, "metadata")
    if local and os.path.isdir(meta) and any(n.endswith(".metadata.json")
                                             for n in os.listdir(meta)):
        return "iceberg"
    if {"zarr.json", ".zarray", ".zgroup"} & set(names):
        return "zarr"
    if any(n.endswith((".parquet", ".pq", ".parq")) or "=" in n for n in names):
        return "parquet"
    return None


def _remote_names(url: str, storage_options: dict | None) -> list[str]:
    """Names directly under a remote directory (none for a file or nothing)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        entries = fs.ls(path.rstrip("/"), detail=False)
    except NotADirectoryError:
        return []
    except FileNotFoundError:
        raise FileNotFoundError(f"Nothing at {url}: check the input path.") from None
    return [posixpath.basename(str(e).rstrip("/")) for e in entries]


def detect_format(path: str, storage_options: dict | None = None) -> str:
    """The format from the suffix or a directory's files, table markers first (local,
    or remote through fsspec with ``storage_options``)."""
    if path.startswith("iceberg://") or path.endswith(".metadata.json"):
        return "iceberg"
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if "://" in path and not path.startswith("file://"):
        found = _sniff_directory(path, _remote_names(path, storage_options))
        if found:
            return found
    elif "://" not in path and os.path.isdir(path):
        found = _sniff_directory(path)
        if found:
            return found
    elif "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"No such file or directory: {path}: check the input path.")
    raise ValueError(
        f"Cannot tell the format of {path}: pass --format "
        f"{'|'.join(f for f in INPUT_FORMATS if f != 'auto')} (input.format in a job spec)."
    )


def open_source(data, *, format: str = "auto", **options) -> Source:
    """The source for ``data``: a path/URL or an in-memory array.

    Parameters
    ----------
    data : str, os.PathLike or array-like
    format : {"auto", "zarr", "parquet", "npy", "delta", "iceberg", "icechunk"}
        ``"auto"`` looks at the suffix, then at a local directory's contents.
    **options
        Options of the chosen source (``array``, ``columns``, ``filters``,
        ``id_column``, ``passthrough``, ``storage_options``, ``chunk_bytes``,
        ``chunk_rows``; for tables ``version``, ``snapshot``, ``as_of``); ``None``
        values are ignored.

    Returns
    -------
    Source
        Call ``.load()`` for the :class:`~distgmm.io.sources.base.Dataset`.
    """
    options = {k: v for k, v in options.items()
               if v is not None and not (isinstance(v, (tuple, list, dict)) and not v)}
    if not isinstance(data, (str, os.PathLike)):
        cls, where = ArraySource, "an in-memory array"
    else:
        data = os.fspath(data)
        if format not in INPUT_FORMATS:
            raise ValueError(f"format={format!r} is not one of {INPUT_FORMATS}.")
        fmt = (detect_format(data, options.get("storage_options")) if format == "auto"
               else format)
        cls, where = SOURCES[fmt], f"{fmt} input"
        if fmt == "zarr" and any(k in options for k in GRIDDED_OPTIONS):
            cls, where = GriddedSource, "gridded zarr input"
    allowed = {f.name for f in dataclasses.fields(cls)} - {"path", "data"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"Option(s) {unknown} do not apply to {where}; it takes {sorted(allowed)}."
        )
    for key in ("columns", "filters", "passthrough", "variables"):
        if key in options:
            options[key] = tuple(options[key])
    return cls(data, **options)
