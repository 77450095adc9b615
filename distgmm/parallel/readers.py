"""Faster readers for the arrays that out-of-core chunk tasks read, registered by io.

parallel knows no storage format (import-linter keeps zarr out of it). The io layer
registers an adapter for the array objects it knows -- a ``zarr.Array`` on local files
is read by a Rust codec pipeline (:mod:`distgmm.io._zarr`) -- and when a pass folds its chunks'
loading tasks (:func:`distgmm.parallel._dask.fold_inputs`), each array those tasks read
goes through the adapters once. An adapter returns an object with the same rows
(``shape``, ``dtype``, ``ndim`` and ``__getitem__``), or ``None`` to leave it alone.
"""

from __future__ import annotations

from collections.abc import Callable

Adapter = Callable[[object], object | None]
_ADAPTERS: list[Adapter] = []


def register(adapter: Adapter) -> None:
    """Add ``adapter`` (once) to those tried on every array a folded chunk task reads."""
    if adapter not in _ADAPTERS:
        _ADAPTERS.append(adapter)


def adapted(value: object) -> object:
    """The first registered adapter's reader for ``value``, else ``value`` itself."""
    for adapter in _ADAPTERS:
        if (reader := adapter(value)) is not None:
            return reader
    return value
