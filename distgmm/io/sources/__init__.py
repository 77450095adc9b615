"""Data sources: each yields a row-chunked float dask array with known chunk sizes."""

from .array import ArraySource, NpySource
from .base import DEFAULT_CHUNK_BYTES, Dataset, Source, chunk_rows
from .delta import DeltaSource
from .filters import parse_filter
from .gridded import GriddedSource
from .iceberg import IcebergSource
from .icechunk import IcechunkSource
from .parquet import ParquetSource
from .registry import detect_format, open_source
from .zarr import ZarrSource

__all__ = [
    "DEFAULT_CHUNK_BYTES", "ArraySource", "Dataset", "DeltaSource", "GriddedSource",
    "IcebergSource", "IcechunkSource", "NpySource", "ParquetSource",
    "Source", "ZarrSource", "chunk_rows", "detect_format", "open_source", "parse_filter",
]
