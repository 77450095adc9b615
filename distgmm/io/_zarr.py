"""Every private zarr and zarrs API distgmm uses, version-gated and failing loudly.

No other module of distgmm touches them (tests/test_architecture.py greps for them).

Route ``zarrs``: a ``zarr.Array`` on local files is read through zarrs
    zarr-python decodes the chunks of a read one by one in Python, about 0.4 ms per
    chunk here whatever its size, so an array of small chunks (a user's 500-row chunks)
    reads at a fraction of the disk's rate. zarrs, the Rust codec pipeline that
    zarr-python takes as a plugin (``pip install 'distgmm[zarrs]'``), decodes the same
    chunks in Rust threads. distgmm reads through a twin of the array -- the same
    metadata, a ``LocalStore`` on the same directory, zarrs' pipeline -- built where the
    rows are read (:class:`distgmm.io.zarr_rows.ZarrRows`), so neither the user's array
    nor zarr's global configuration changes. Decoding is lossless: the same bytes either
    way. Measured in ``benchmarks/results/issue17-chunking.md``.

    Private parts: ``AsyncArray.codec_pipeline`` (a dataclass field that zarr fills in
    ``__init__``; set here on the twin), ``FsspecStore.fs``/``.path`` and
    ``AsyncFileSystemWrapper.sync_fs`` (to tell that the fsspec store
    ``dask.array.from_zarr(path)`` opens is a local directory), and from
    ``zarrs.pipeline``: ``ZarrsCodecPipeline``, ``get_codec_pipeline_impl`` (with
    ``strict=True``), ``get_codec_pipeline_fallback`` and ``UnsupportedMetadataError``
    (zarrs documents its pipeline only through zarr's configuration).
    Fallback: zarr-python's own pipeline (the same bytes, slower for small chunks).

Versions: the route is used for zarr in ``TESTED_ZARR`` and zarrs in ``TESTED_ZARRS``.
Outside them, or when building a twin fails, one ``RuntimeWarning`` names the APIs, the
versions and the consequence. A read the twin fails is reported as a corrupt store
(naming zarrs and the switch below) and is not tried again with zarr-python, which reads
an empty shard file as missing chunks. Without zarrs installed the route is off.

Switch: ``DISTGMM_ZARRS=0`` in the environment reads with zarr-python's pipeline.
zarrs' threads follow zarr's ``threading.max_workers`` (``ZARR_THREADING__MAX_WORKERS``).
"""

from __future__ import annotations

import threading
import warnings
from importlib.metadata import PackageNotFoundError, version

from ..parallel.versions import in_tested_range, switched_off

TESTED_ZARR = ("3.1.0", "3.2.0")  # [first, first not checked)
TESTED_ZARRS = ("0.2.0", "0.3.0")
CHECKED = "zarr 3.1.6, zarrs 0.2.3"
ENV_SWITCH = "DISTGMM_ZARRS"
APIS = ("zarr.core.array.AsyncArray.codec_pipeline, zarr.storage.FsspecStore.fs, "
        "zarrs.pipeline.get_codec_pipeline_impl")
CONSEQUENCE = ("Zarr chunks are decoded by zarr-python one by one (about 0.4 ms per chunk "
               "here: arrays of small chunks read several times slower); results are "
               "unchanged")

_lock = threading.Lock()
_usable: dict[str, bool] = {}  # decided once per process


def _warn(why: str) -> None:
    warnings.warn(f"distgmm: private zarr route 'zarrs' ({APIS}) is off: {why} (checked "
                  f"against {CHECKED}). Consequence: {CONSEQUENCE}.", RuntimeWarning,
                  stacklevel=3)


def _check() -> bool:
    try:
        zarr_version, zarrs_version = version("zarr"), version("zarrs")
    except PackageNotFoundError:
        return False  # the optional extra is not installed: nothing is broken
    if not (in_tested_range(zarr_version, *TESTED_ZARR)
            and in_tested_range(zarrs_version, *TESTED_ZARRS)):
        _warn(f"zarr {zarr_version} / zarrs {zarrs_version} is outside the tested ranges "
              f"zarr [{TESTED_ZARR[0]}, {TESTED_ZARR[1]}), zarrs "
              f"[{TESTED_ZARRS[0]}, {TESTED_ZARRS[1]})")
        return False
    return True


def usable() -> bool:
    """Whether the route is installed, in its tested versions and switched on."""
    if switched_off(ENV_SWITCH):
        return False
    with _lock:
        if "zarrs" not in _usable:
            _usable["zarrs"] = _check()
        return _usable["zarrs"]


def local_directory(array) -> tuple[str, str] | None:
    """``(root directory, path of the array in it)`` of a ``zarr.Array`` on local files;
    ``None`` for anything else (object stores, zip files, memory, icechunk)."""
    import zarr
    from zarr.storage import FsspecStore, LocalStore

    if not isinstance(array, zarr.Array):
        return None
    store_path = array.async_array.store_path
    store = store_path.store
    if isinstance(store, LocalStore):
        return str(store.root), store_path.path
    if isinstance(store, FsspecStore):
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(getattr(store.fs, "sync_fs", store.fs), LocalFileSystem):
            return store.path, store_path.path
    return None


def zarrs_twin(array, root: str, path: str):
    """``array`` read through zarrs from ``root``; ``None`` when zarrs cannot decode it:
    a codec or data type it lacks, or rows it cannot write (non-native byte order, an
    array read in Fortran order), which zarrs would refuse only at the first read."""
    if not array.dtype.isnative or array.order != "C":
        return None
    import zarr
    from zarr.core.array import AsyncArray
    from zarr.storage import LocalStore, StorePath
    from zarrs.pipeline import (
        UnsupportedMetadataError,
        ZarrsCodecPipeline,
        get_codec_pipeline_fallback,
        get_codec_pipeline_impl,
    )

    store = LocalStore(root, read_only=True)
    try:  # strict: an exception, not a process-wide UserWarning, for an unsupported array
        impl = get_codec_pipeline_impl(array.metadata, store, strict=True)
    except UnsupportedMetadataError:
        return None
    pipeline = ZarrsCodecPipeline(
        metadata=array.metadata, store=store, impl=impl,
        python_impl=get_codec_pipeline_fallback(array.metadata, strict=False))
    twin = AsyncArray(array.metadata, StorePath(store, path), array.async_array.config)
    object.__setattr__(twin, "codec_pipeline", pipeline)  # a frozen dataclass's field
    return zarr.Array(twin)


def fast_reader(array):
    """What to read ``array``'s rows from: its zarrs twin where the route applies, else
    ``array`` itself. Called where the rows are read (a worker)."""
    if not usable():
        return array
    try:
        where = local_directory(array)
        twin = None if where is None else zarrs_twin(array, *where)
    except Exception as exc:  # an API that moved or changed
        with _lock:
            _usable["zarrs"] = False
        _warn(f"{type(exc).__name__}: {exc}")
        return array
    return array if twin is None else twin


def read_adapter(value):
    """The read adapter io registers (:mod:`distgmm.parallel.readers`): a ``zarr.Array``
    on local files, as out-of-core chunk tasks read it, becomes a
    :class:`~distgmm.io.zarr_rows.ZarrRows` (read through zarrs where it is read, and a
    corrupt chunk named by its rows); ``None`` for anything else."""
    if not type(value).__module__.startswith("zarr.") or not usable():
        return None
    where = local_directory(value)
    if where is None:
        return None
    from .zarr_rows import ZarrRows

    root, path = where
    return ZarrRows(value, root + (f" (array {path!r})" if path else ""))
