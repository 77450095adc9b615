"""Gates of the private routes: the tested version range, and the switch that turns a route off."""

from __future__ import annotations

import os
import re


def in_tested_range(version: str, low: str, high: str) -> bool:
    """``low <= version < high``, by ``packaging`` when installed and every string parses;
    else by the leading numbers of each (the same rule for all three, so they compare).

    Parameters
    ----------
    version : str
        The installed version, e.g. ``dask.__version__``.
    low, high : str
        The first version tested and the first one not checked.
    """
    try:
        from packaging.version import Version

        v = Version(version)  # a pre-release of ``high`` is not tested either
        return Version(low) <= v and Version(v.base_version) < Version(high)
    except Exception:  # no packaging, or a version string it cannot read
        def numbers(text: str) -> tuple:
            return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])

        return numbers(low) <= numbers(version) < numbers(high)


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` (e.g. ``DISTGMM_ZARRS``) says off:
    ``0``, ``false``, ``no`` or ``off``, in any case; unset means on."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")
