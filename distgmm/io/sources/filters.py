"""Row filters, as users write them (``"date == '2026-11-01'"``, ``x > 3``) and as the
readers apply them (pyarrow expressions, typed by the column they compare with)."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

import pandas as pd

_OPS = ("==", "!=", "<=", ">=", "<", ">", "not in", "in")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(==|!=|<=|>=|<|>|=|not\s+in|in)\s*(.+?)\s*$")


def parse_filter(expr) -> tuple:
    """``"col OP value"`` (or a ``[col, op, value]`` triple) as a pyarrow filter tuple.

    ``value`` is a Python literal (``3``, ``2.5``, ``'2026-11-01'``, ``[1, 2]``); a bare
    word is taken as a string. ``=`` means ``==``.

    Examples
    --------
    >>> parse_filter("date == '2026-11-01'")
    ('date', '==', '2026-11-01')
    >>> parse_filter("x > 3")
    ('x', '>', 3)
    """
    if isinstance(expr, (list, tuple)):
        if len(expr) != 3 or expr[1] not in _OPS:
            raise ValueError(
                f"Filter {list(expr)!r} is not [column, op, value] with op one of {_OPS}."
            )
        return tuple(expr)
    m = _FILTER.match(str(expr))
    if not m:
        raise ValueError(
            f"Cannot read the filter {expr!r}: write it as 'COLUMN OP VALUE', e.g. "
            "\"date == '2026-11-01'\" or 'x > 3', with OP one of " + ", ".join(_OPS) + "."
        )
    col, op, raw = m.groups()
    op = "==" if op == "=" else re.sub(r"\s+", " ", op)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if op in ("in", "not in") and not isinstance(value, (list, tuple, set)):
        raise ValueError(f"Filter {expr!r}: '{op}' needs a list, e.g. \"{col} {op} [1, 2]\".")
    return (col, op, list(value) if op in ("in", "not in") else value)


def typed_filter(filt: tuple, dtypes: dict | None) -> tuple:
    """A filter whose text values are compared with a timestamp or date column: ISO
    literals (``ts < '2026-01-01 05:00:00'``) become timestamps of the column's zone."""
    col, op, value = filt
    dtype = (dtypes or {}).get(col)
    if dtype is None or not _is_temporal(dtype):
        return filt
    tz = getattr(dtype, "tz", None) or getattr(getattr(dtype, "pyarrow_dtype", None),
                                               "tz", None)

    def convert(v):
        if not isinstance(v, str):
            return v
        try:
            ts = pd.Timestamp(v)
        except ValueError:
            raise ValueError(f"Filter {col} {op} {v!r}: {col} holds timestamps; write the "
                             "value as an ISO date or time, e.g. '2026-01-01 05:00:00'.") from None
        if tz is not None and ts.tzinfo is None:
            ts = ts.tz_localize(tz)
        if str(dtype).startswith("date32"):
            return ts.date()
        return ts

    return (col, op, [convert(v) for v in value] if isinstance(value, list) else convert(value))


def _is_temporal(dtype) -> bool:
    text = str(dtype)
    return text.startswith(("datetime64", "timestamp", "date32", "date64"))


def plain_value(value):
    """A filter value as JSON can hold it (dates as ISO strings)."""
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def plain_filters(parsed) -> list:
    """Filters as JSON holds them (for descriptions and fingerprints)."""
    return [[c, op, plain_value(v)] for c, op, v in parsed]


def check_filter_columns(where: str, filters, available: Sequence[str]) -> list[tuple]:
    """The parsed filters, each on a column the table has."""
    parsed = [parse_filter(f) for f in filters]
    unknown = sorted({c for c, _, _ in parsed if c not in available})
    if unknown:
        raise ValueError(f"Filter column(s) {unknown} not in {where}; it has "
                         f"{list(available)}: fix the filters.")
    return parsed


def arrow_filter(parsed):
    """The parsed filters ANDed as a pyarrow compute expression (None for none)."""
    if not parsed:
        return None
    import pyarrow.parquet as pq

    return pq.filters_to_expression([tuple(f) for f in parsed])
