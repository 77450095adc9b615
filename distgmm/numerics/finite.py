"""The error for rows whose values, or whose log-likelihood, are not finite.

Its own module so that input checks (``parallel/inputs``, reached by every source) can
raise it without loading the compiled kernel.
"""

from __future__ import annotations

import numpy as np


def raise_nonfinite(X: np.ndarray, row_start: int) -> None:
    """Raise a ValueError saying how many non-finite values a block holds, and where."""
    bad = ~np.isfinite(X)
    last = row_start + X.shape[0] - 1
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"Input contains NaN or infinity: {int(bad.sum())} non-finite value(s) in "
            f"{len(np.unique(rows))} row(s) between rows {row_start} and {last}, first at "
            f"row {row_start + int(rows[0])}, column {int(cols[0])}. Drop or impute those "
            "rows before fitting."
        )
    raise ValueError(
        f"The log-likelihood of rows {row_start}..{last} is not finite (values too large "
        "for float64 arithmetic). Scale the input data."
    )
