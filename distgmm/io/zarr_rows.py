"""Rows of a Zarr array as out-of-core tasks read them (imports no pandas or pyarrow).

Workers unpickle a :class:`ZarrRows` with every chunk task that reads one, so this module
stays light: importing ``distgmm.io.sources`` would pull in pandas and pyarrow (0.9 s of
a fresh worker's first task here).
"""

from __future__ import annotations

from ._zarr import fast_reader


class ZarrRows:
    """The zarr array as dask reads it: a corrupt chunk becomes a ValueError naming rows.

    Codecs report undecodable bytes as RuntimeError/ValueError from deep inside zarr;
    the user needs to hear which store and which rows, and that rewriting it is the fix.
    """

    def __init__(self, array, where: str):
        self.array, self.where = array, where
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self._reader = None  # built where the rows are read, not pickled

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}

    def __getitem__(self, key):
        if self._reader is None:  # a local array: a faster twin (io/_zarr.py)
            self._reader = fast_reader(self.array)
        try:
            return self._reader[key]
        except (RuntimeError, ValueError, OSError) as e:
            # no second try with zarr-python: it reads an empty shard file as missing
            # (fill values), which zarrs rightly calls corrupt
            raise self._unreadable(key, e) from None

    def _unreadable(self, key, e: BaseException) -> ValueError:
        rows = key[0] if isinstance(key, tuple) else key
        span = (f"rows {rows.start}-{rows.stop - 1}" if isinstance(rows, slice)
                else "some rows")
        via = ("" if self._reader is self.array
               else " (read by zarrs; DISTGMM_ZARRS=0 reads with zarr-python)")
        return ValueError(
            f"{self.where}: cannot read {span} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:120]}){via}: the store is corrupt or incomplete; "
            "rewrite those chunks."
        )
