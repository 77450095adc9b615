"""What this installation is: which E-step kernel runs and why, the CPU, the versions."""

from __future__ import annotations

SYSTEM_PACKAGES = ("distgmm", "numpy", "scipy", "dask", "distributed", "scikit-learn",
                   "zarr", "pyarrow")


def system_info() -> dict:
    """Which E-step kernel runs here and why, the CPU, Python and the library versions.

    Returns
    -------
    dict
        ``kernel`` (see :func:`distgmm.numerics.kernel_info`; ``"error"`` with the
        reason where the installed kernel does not match distgmm), ``python``,
        ``platform`` and ``versions`` (None for a package that is not installed).
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        from ..numerics import kernel_info

        kernel = kernel_info()
    except ImportError as e:  # a kernel built from other sources: suffstats refuses it
        kernel = {"kernel": "error", "module": getattr(e, "name", None), "reason": str(e),
                  "cpu": {"machine": platform.machine(), "features": None}}
    versions = {}
    for name in SYSTEM_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"kernel": kernel, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}
