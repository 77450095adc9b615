"""Integrity of state read back from storage: checkpoints and model files.

Every read is bounded (its size is checked before a byte is read, and only regular
files are read), every document carries a SHA-256 of its content, and fitted
parameters are checked for consistency (shapes, finite values, weights summing to 1,
covariances matching their precision factors, iteration counts matching the history).
A content hash detects accidental damage and casual edits; the consistency checks
stop a re-hashed edit from yielding parameters EM could not have produced.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat

import numpy as np

from ..numerics.gaussian import precision_cholesky, precisions_from_cholesky
from ..options import COVARIANCE_TYPES, covariance_shape

# a checkpoint holds O(n_init * K * d^2) numbers as JSON text; a model.json, parameters,
# history and metrics: generous bounds that still stop a /dev/zero or a runaway file
MAX_CHECKPOINT_BYTES = 1 << 30
MAX_MODEL_JSON_BYTES = 64 << 20
MAX_METRICS_BYTES = 64 << 20
NPY_HEADER_SLACK = 1 << 16
HASH_KEY = "sha256"
_WEIGHT_SUM_TOL = 1e-6
_FACTOR_RTOL = 1e-6


class CorruptState(ValueError):
    """A checkpoint or model file that is damaged, tampered with or inconsistent."""


def _is_local(fs) -> bool:
    protocol = fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


def _local_size(path: str, *, allow_symlink: bool) -> int:
    st = os.stat(path) if allow_symlink else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise CorruptState(f"{path} is a symbolic link, not a file written by distgmm")
    if not stat.S_ISREG(st.st_mode):
        raise CorruptState(f"{path} is not a regular file")
    return st.st_size


def read_bounded(fs, path: str, limit: int, *, allow_symlink: bool = True) -> bytes:
    """The bytes of the regular file ``path``, refused unread if larger than ``limit``.

    Raises
    ------
    CorruptState
        Not a regular file (a device such as ``/dev/zero``, a FIFO, a directory; with
        ``allow_symlink=False`` also a symbolic link), or larger than ``limit`` bytes.
    FileNotFoundError
        ``path`` does not exist.
    """
    if _is_local(fs):
        size = _local_size(path, allow_symlink=allow_symlink)
    else:
        info = fs.info(path)
        if info.get("type") != "file":
            raise CorruptState(f"{path} is not a file")
        size = info.get("size")
    if size is None or size > limit:
        raise CorruptState(f"{path} holds {size} bytes, more than the {limit} expected")
    if _is_local(fs):
        with open(path, "rb") as fh:  # read at most limit + 1 bytes, whatever it became
            data = fh.read(limit + 1)
    else:
        data = fs.cat_file(path)
    if len(data) > limit:
        raise CorruptState(f"{path} grew past the {limit} bytes expected while read")
    return data


def content_hash(doc: dict) -> str:
    """SHA-256 of ``doc`` without its own hash key, as canonical JSON (sorted keys).

    A document hashes the same before it is written and after it is read back: JSON
    writes a tuple as a list and a float as its round-tripping repr either way.
    """
    body = {k: v for k, v in doc.items() if k != HASH_KEY}
    canonical = json.dumps(body, sort_keys=True, allow_nan=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def dumps_with_hash(doc: dict) -> bytes:
    """``doc`` as JSON with its :func:`content_hash` added, serialised once (a
    checkpoint is written after every iteration)."""
    canonical = json.dumps(doc, sort_keys=True, allow_nan=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return (canonical[:-1] + f',"{HASH_KEY}":"{digest}"}}').encode()


def bytes_hash(data: bytes) -> str:
    """SHA-256 of raw bytes (one ``.npy`` file)."""
    return hashlib.sha256(data).hexdigest()


def check_hash(doc: dict) -> str | None:
    """``None`` if ``doc`` carries a matching hash, else what is wrong with it."""
    stored = doc.get(HASH_KEY)
    if stored is None:
        return "it carries no content hash"
    if not isinstance(stored, str) or stored != content_hash(doc):
        return "its content hash does not match its content (edited or damaged)"
    return None


_SAFE_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.npy")


def check_array_file_name(name) -> str | None:
    """``None`` for a plain file name inside the model directory, else why not."""
    if not isinstance(name, str) or not _SAFE_FILE.fullmatch(name) or ".." in name:
        return (f"array path {name!r} is not a plain .npy file name inside the model "
                "directory")
    return None


def npy_limit(shape: tuple) -> int:
    """The size bound of a float64 ``.npy`` file of ``shape``."""
    return int(np.prod(shape, dtype=np.int64)) * 8 + NPY_HEADER_SLACK


# --------------------------------------------------------------- the parameters


def _as_array(value, what: str, shape: tuple) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CorruptState(f"{what} is not an array of numbers") from None
    if arr.shape != tuple(shape):
        raise CorruptState(f"{what} has shape {arr.shape}, expected {tuple(shape)}")
    if not np.isfinite(arr).all():
        raise CorruptState(f"{what} holds {int((~np.isfinite(arr)).sum())} non-finite "
                           "value(s)")
    return arr


def _check_weights(weights: np.ndarray, what: str) -> None:
    if (weights < 0).any():
        raise CorruptState(f"{what}weights has a negative entry")
    total = float(weights.sum())
    if abs(total - 1.0) > _WEIGHT_SUM_TOL:
        raise CorruptState(f"{what}weights sum to {total!r}, not 1")


def _check_factors(cov, prec_chol: np.ndarray, ct: str, what: str) -> None:
    """Precision factors positive definite, and matching the covariances if given."""
    diag = {"full": lambda p: np.diagonal(p, axis1=-2, axis2=-1),
            "tied": np.diag}.get(ct, lambda p: p)(prec_chol)
    if (diag <= 0).any():
        raise CorruptState(f"{what}precisions_cholesky is not a positive-definite factor")
    if cov is None:
        return
    try:
        expected = precision_cholesky(cov, ct)
    except ValueError:
        raise CorruptState(f"{what}covariances are not positive definite") from None
    if not np.allclose(expected, prec_chol, rtol=_FACTOR_RTOL, atol=0.0):
        raise CorruptState(f"{what}precisions_cholesky does not match covariances")


def check_params(weights, means, prec_chol, ct, covariances=None, *, what: str = "",
                 shape: tuple | None = None) -> tuple:
    """Checked float64 arrays ``(weights, means, precisions_cholesky, covariances)``.

    Parameters
    ----------
    weights, means, prec_chol, covariances : array-like
        As stored (lists or arrays); ``covariances`` may be None.
    ct : str
        Covariance type.
    what : str
        Prefix naming where the parameters are (``"restart 0: "``).
    shape : tuple of (n_components, n_features), optional
        Expected sizes; taken from ``means`` when not given.

    Raises
    ------
    CorruptState
    """
    if ct not in COVARIANCE_TYPES:
        raise CorruptState(f"{what}unknown covariance_type {ct!r}")
    if shape is None:
        m = np.asarray(means, dtype=object)
        if m.ndim != 2 or 0 in m.shape:
            raise CorruptState(f"{what}means is not a non-empty 2-D array")
        shape = m.shape
    k, d = shape
    w = _as_array(weights, f"{what}weights", (k,))
    mu = _as_array(means, f"{what}means", (k, d))
    cov_shape = covariance_shape(ct, k, d)
    pc = _as_array(prec_chol, f"{what}precisions_cholesky", cov_shape)
    cov = None if covariances is None else _as_array(covariances, f"{what}covariances",
                                                     cov_shape)
    _check_weights(w, what)
    _check_factors(cov, pc, ct, what)
    return w, mu, pc, cov


def check_precisions(precisions: np.ndarray, prec_chol: np.ndarray, ct: str) -> None:
    """Stored precision matrices equal ``P P^T`` of their factors."""
    if not np.allclose(precisions, precisions_from_cholesky(prec_chol, ct),
                       rtol=_FACTOR_RTOL, atol=0.0):
        raise CorruptState("precisions do not match precisions_cholesky")


# ------------------------------------------------------------------ the history


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_history(fit: dict, *, tol: float | None = None, max_iter: int | None = None,
                  what: str = "", require_iteration: bool = False) -> dict:
    """Checked ``{converged, n_iter, lower_bound, lower_bounds}`` of one EM run.

    ``n_iter`` is a non-negative int equal to the length of ``lower_bounds`` (one
    entry per iteration), ``lower_bound`` is the last entry, all finite; with ``tol``
    and ``max_iter``, ``converged`` must agree with the history as EM decides it (the
    last change below ``tol``; a run that did not converge ran ``max_iter`` iterations).
    """
    if not isinstance(fit, dict):
        raise CorruptState(f"{what}the fit summary is not a mapping")
    n_iter, converged = fit.get("n_iter"), fit.get("converged")
    lbs, lb = fit.get("lower_bounds"), fit.get("lower_bound")
    if not _is_int(n_iter) or n_iter < (1 if require_iteration else 0):
        raise CorruptState(f"{what}n_iter is {n_iter!r}, not a count of iterations")
    if not isinstance(converged, bool):
        raise CorruptState(f"{what}converged is {converged!r}, not true or false")
    if not isinstance(lbs, list) or not all(isinstance(v, (int, float))
                                            and not isinstance(v, bool) for v in lbs):
        raise CorruptState(f"{what}lower_bounds is not a list of numbers")
    if len(lbs) != n_iter:
        raise CorruptState(f"{what}n_iter is {n_iter} but the history holds {len(lbs)} "
                           "iteration(s)")
    if not all(math.isfinite(v) for v in lbs):
        raise CorruptState(f"{what}lower_bounds holds a non-finite value")
    if not isinstance(lb, (int, float)) or isinstance(lb, bool) or (
            n_iter and lb != lbs[-1]):
        raise CorruptState(f"{what}lower_bound {lb!r} is not the last of lower_bounds")
    _check_converged(converged, lbs, tol, max_iter, what)
    return {"converged": converged, "n_iter": n_iter, "lower_bound": float(lb),
            "lower_bounds": [float(v) for v in lbs]}


def _check_converged(converged: bool, lbs: list, tol, max_iter, what: str) -> None:
    if max_iter is not None and len(lbs) > max_iter:
        raise CorruptState(f"{what}n_iter is {len(lbs)}, more than max_iter={max_iter}")
    if converged and not lbs:
        raise CorruptState(f"{what}converged is true after 0 iterations")
    if tol is None or len(lbs) < 2:  # the first change is against -inf or a warm start
        return
    change = abs(lbs[-1] - lbs[-2])
    if converged and not change < tol:
        raise CorruptState(f"{what}converged is true but the last change {change:.3g} is "
                           f"not below tol={tol:g}")
    if not converged and change < tol:
        raise CorruptState(f"{what}converged is false but the last change {change:.3g} "
                           f"is below tol={tol:g}")
