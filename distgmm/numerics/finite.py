"""The error for rows whose values, or whose log-likelihood, are not finite.

Its own module so that input checks (``parallel/inputs``, reached by every source) can
raise it without loading the compiled kernel.
"""

from __future__ import annotations

import numpy as np


class NonFiniteError(ValueError):
    """Non-finite input values: how many, in how many rows, and the first one.

    Parameters
    ----------
    n_values, n_rows : int
        Non-finite values and rows holding them (in ``span`` if given, else in all data).
    first_row, column : int
        Global row index and column position of the first non-finite value.
    span : tuple of (int, int), optional
        The rows looked at, when only part of the data was (one block).
    names : sequence of str, optional
        Feature names, to name the column.
    """

    def __init__(self, n_values: int, n_rows: int, first_row: int, column: int,
                 span: tuple | None = None, names=None):
        self.n_values, self.n_rows, self.first_row = int(n_values), int(n_rows), int(first_row)
        self.column, self.span = int(column), None if span is None else tuple(span)
        self.names = None if names is None else [str(n) for n in names]
        where = "" if self.span is None else f" between rows {span[0]} and {span[1]}"
        col = f"column {self.column}"
        if self.names is not None and self.column < len(self.names):
            col += f" ({self.names[self.column]!r})"
        super().__init__(
            f"Input contains NaN or infinity: {self.n_values} non-finite value(s) in "
            f"{self.n_rows} row(s){where}, first at row {self.first_row}, {col}. Drop or "
            "impute those rows before fitting."
        )

    def __reduce__(self):  # travels from workers with its fields, not its message
        return (type(self), (self.n_values, self.n_rows, self.first_row, self.column,
                             self.span, self.names))

    def named(self, names) -> NonFiniteError:
        """The same error naming the column by ``names`` (``None``: unchanged)."""
        if names is None:
            return self
        return NonFiniteError(self.n_values, self.n_rows, self.first_row, self.column,
                              self.span, names)


def nonfinite_summary(X: np.ndarray) -> tuple[int, int, int, int]:
    """``(values, rows, first_row, first_column)`` of non-finite values in ``X``
    (``first_row`` and ``first_column`` are -1 when there are none)."""
    bad = ~np.isfinite(X)
    rows = bad.any(axis=1)
    n_rows = int(rows.sum())
    if not n_rows:
        return 0, 0, -1, -1
    first = int(np.argmax(rows))
    return int(bad.sum()), n_rows, first, int(np.argmax(bad[first]))


def raise_nonfinite(X: np.ndarray, row_start: int) -> None:
    """Raise a ValueError saying how many non-finite values a block holds, and where."""
    n_values, n_rows, first, col = nonfinite_summary(X)
    last = row_start + X.shape[0] - 1
    if n_values:
        raise NonFiniteError(n_values, n_rows, row_start + first, col, (row_start, last))
    raise ValueError(
        f"The log-likelihood of rows {row_start}..{last} is not finite (values too large "
        "for float64 arithmetic). Scale the input data."
    )
