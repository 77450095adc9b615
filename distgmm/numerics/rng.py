"""Counter-based random numbers addressed by row, so draws do not depend on chunking."""

from __future__ import annotations

import numpy as np


def row_uniforms(key: tuple[int, int], row_start: int, n_rows: int, n_cols: int = 1) -> np.ndarray:
    """Uniform [0, 1) draws for rows ``row_start .. row_start + n_rows`` of a stream.

    Row ``i`` of stream ``key`` always gets the same numbers, whichever chunk it
    sits in: a Philox generator is positioned at the row's place in the stream.

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
    # stream position p = row * n_cols is output p % 4 of Philox block p // 4: draw
    # exactly the numbers asked for, wherever the block starts
    pos = int(row_start) * n_cols
    gen = np.random.Generator(np.random.Philox(key=np.asarray(key, dtype=np.uint64),
                                               counter=pos // 4))
    if pos % 4:
        gen.random(pos % 4)
    return gen.random(n_rows * n_cols).reshape(n_rows, n_cols)
