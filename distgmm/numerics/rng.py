"""Counter-based random numbers addressed by row, so draws do not depend on chunking."""

from __future__ import annotations

import numpy as np


def row_uniforms(key: tuple[int, int], row_start: int, n_rows: int, n_cols: int = 1) -> np.ndarray:
    """Uniform [0, 1) draws for rows ``row_start .. row_start + n_rows`` of a stream.

    Row ``i`` of stream ``key`` always gets the same numbers, whichever chunk it
    sits in: a Philox generator is positioned at the row's counter.

    Parameters
    ----------
    key : tuple of two ints
        Stream identity (e.g. seed and pass number).
    row_start : int
        Global index of the first row.
    n_rows, n_cols : int
        Shape of the result.

    Returns
    -------
    ndarray of shape (n_rows, n_cols)
    """
    per_row = -(-n_cols // 4)  # Philox4x64: 4 doubles per counter step
    bitgen = np.random.Philox(
        key=np.asarray(key, dtype=np.uint64), counter=int(row_start) * per_row
    )
    return np.random.Generator(bitgen).random((n_rows, 4 * per_row))[:, :n_cols]
