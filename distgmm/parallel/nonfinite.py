"""Where the non-finite values of a dask array are: counted over all of it.

A pass stops at the first block whose values are not finite, and that block's error
knows only that block. Only on that failure, one more pass counts every non-finite
value and row and finds the first, so the message is true for the whole input.
"""

from __future__ import annotations

import numpy as np

from ..numerics.finite import NonFiniteError, nonfinite_summary


def _block_summary(x: np.ndarray) -> np.ndarray:
    return np.asarray([nonfinite_summary(np.asarray(x))], dtype=np.int64)


def locate_nonfinite(X) -> NonFiniteError | None:
    """The error describing every non-finite value of the 2-D dask array ``X``
    (features in one chunk), or ``None`` if all are finite."""
    import dask.array as da

    X = X.rechunk({1: -1}) if X.numblocks[1] > 1 else X
    per_block = da.map_blocks(_block_summary, X, dtype=np.int64,
                              chunks=((1,) * X.numblocks[0], (4,))).compute()
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(np.int64)
    n_values, n_rows = int(per_block[:, 0].sum()), int(per_block[:, 1].sum())
    if not n_values:
        return None
    i = int(np.argmax(per_block[:, 1] > 0))
    return NonFiniteError(n_values, n_rows, int(starts[i] + per_block[i, 2]),
                          int(per_block[i, 3]))
