"""Pick the source for a path (or an in-memory array) and its options."""

from __future__ import annotations

import dataclasses
import os

from ...options import INPUT_FORMATS
from .array import ArraySource, NpySource
from .base import Source
from .gridded import GriddedSource
from .parquet import ParquetSource
from .zarr import ZarrSource

SOURCES = {"zarr": ZarrSource, "parquet": ParquetSource, "npy": NpySource}
GRIDDED_OPTIONS = ("variables", "feature_dim", "feature_axis")
"""Options that make Zarr input gridded (:class:`GriddedSource`)."""
_SUFFIXES = {".zarr": "zarr", ".zip": "zarr", ".parquet": "parquet", ".pq": "parquet",
             ".parq": "parquet", ".npy": "npy"}


def _sniff_directory(path: str) -> str | None:
    names = os.listdir(path)
    if {"zarr.json", ".zarray", ".zgroup"} & set(names):
        return "zarr"
    if any(n.endswith((".parquet", ".pq", ".parq")) or "=" in n for n in names):
        return "parquet"
    return None


def detect_format(path: str) -> str:
    """``"zarr"``, ``"parquet"`` or ``"npy"`` from the suffix or a local directory's files."""
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if "://" not in path and os.path.isdir(path):
        found = _sniff_directory(path)
        if found:
            return found
    elif "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"No such file or directory: {path}: check the input path.")
    raise ValueError(
        f"Cannot tell the format of {path}: pass --format zarr|parquet|npy (input.format "
        "in a job spec)."
    )


def open_source(data, *, format: str = "auto", **options) -> Source:
    """The source for ``data``: a path/URL or an in-memory array.

    Parameters
    ----------
    data : str, os.PathLike or array-like
    format : {"auto", "zarr", "parquet", "npy"}
        ``"auto"`` looks at the suffix, then at a local directory's contents.
    **options
        Options of the chosen source (``array``, ``columns``, ``filters``,
        ``id_column``, ``passthrough``, ``storage_options``, ``chunk_bytes``,
        ``chunk_rows``); ``None`` values are ignored.

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
        fmt = detect_format(data) if format == "auto" else format
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
