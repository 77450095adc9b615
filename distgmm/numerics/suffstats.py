"""Partial sufficient statistics of one chunk: the fused E-step, and their merge.

The float64 E-step runs in the compiled kernel ``_estep.c`` (same arithmetic as the
numpy tiles of :func:`chunk_stats_numpy`, which remain for float32 and as its oracle in
the tests); everything else is numpy. All accumulators are float64 whatever the input
dtype.

Every chunk is first shifted by a centre ``c`` shared by all chunks of a pass (the
weighted mean of the current means), so data far from the origin (an offset of 1e6 with
unit spread) loses no digits. The E-step kernel (:func:`chunk_stats`) takes all moments
about ``c``; the initialisation passes (:func:`resp_stats`) take ``full`` second moments
about given per-component means ``c + shift`` (points that start a component then get an
exactly zero scatter). Statistics stay additive across chunks either way.

==========  ===========================================  ================
type        ``s2``                                       shape
==========  ===========================================  ================
full        sum_i r_ik w_i (x_i - c - s_k)(...)^T        (K, d, d)
tied        sum_i w_i (x_i - c)(x_i - c)^T               (d, d)
diag        sum_i r_ik w_i (x_i - c)**2                  (K, d)
spherical   sum_i r_ik w_i |x_i - c|**2                  (K,)
==========  ===========================================  ================
"""

from __future__ import annotations

import platform
import threading
import warnings
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ..options import COVARIANCE_TYPES, covariance_code
from . import scratch
from .features import centered_natural_params, fill_quadratic, n_feature_rows, unpack_moments
from .finite import raise_nonfinite
from .params import GMMParams

NO_KERNEL_MESSAGE = (
    "distgmm's compiled E-step (distgmm/numerics/_estep.c) is not available ({reason}), "
    "so fits run on the numpy kernel at about half the speed. Reinstall distgmm with a C "
    "compiler (gcc or clang) and the Python headers present; `distgmm info --system` "
    "says which kernel runs."
)

_NO_KERNEL_REASON = "built without it"
try:
    from . import _estep
except ImportError as e:  # DISTGMM_NO_COMPILED_KERNEL=1 (setup.py): numpy does the work
    _estep = None
    # "cannot import name": no extension file at all; else one that does not load
    _NO_KERNEL_REASON = ("no distgmm.numerics._estep extension is installed"
                         if str(e).startswith("cannot import name")
                         else f"distgmm.numerics._estep does not load: {e}")
_AVX2_REASON = "not an x86-64 CPU"
if _estep is not None and _estep.cpu_has_avx2_fma():
    try:  # the AVX2 + FMA build of the same kernel (see setup.py)
        from . import _estep_avx2 as _estep
    except ImportError as e:  # built where the compiler could not target AVX2
        _AVX2_REASON = f"the AVX2 build is not installed ({e})"
elif _estep is not None and platform.machine().lower() in ("x86_64", "amd64"):
    _AVX2_REASON = "this CPU lacks AVX2 or FMA"


def _check_kernel(module) -> None:
    """Refuse a kernel whose type codes or feature rows are not this package's.

    ``_estep.c`` exports its covariance types in code order and its count of feature
    rows; they must be :data:`distgmm.options.COVARIANCE_TYPES` and
    :func:`~distgmm.numerics.features.n_feature_rows`, or the kernel would score rows
    under the wrong type (a build from other sources, left in place by an upgrade).
    """
    types = getattr(module, "COVARIANCE_TYPES", None)
    problem = None
    if types != COVARIANCE_TYPES:
        problem = (f"its covariance types by code are {types!r}, distgmm.options says "
                   f"{COVARIANCE_TYPES!r}")
    else:
        for ct in COVARIANCE_TYPES:
            for d in (1, 2, 3, 7, 64):
                got = module.n_feature_rows(covariance_code(ct), d)
                if got != n_feature_rows(ct, d):
                    problem = (f"it counts {got} feature rows for {ct} with {d} features, "
                               f"features.n_feature_rows {n_feature_rows(ct, d)}")
                    break
            if problem:
                break
    if problem:
        raise ImportError(
            f"{module.__name__} ({getattr(module, '__file__', '?')}) does not match "
            f"distgmm's Python code: {problem}. It was built from other sources: "
            "reinstall distgmm (pip install --force-reinstall distgmm, or "
            "`python setup.py build_ext --inplace` in a checkout).",
            name=module.__name__,
        )


if _estep is not None:
    _check_kernel(_estep)

HAVE_COMPILED = _estep is not None


def kernel_info() -> dict:
    """Which E-step kernel float64 fits run in this process, and why.

    Returns
    -------
    dict
        ``kernel``: ``"compiled-avx2"`` (the AVX2 + FMA build), ``"compiled"`` (the
        generic build) or ``"numpy"`` (no compiled kernel); ``module``: the kernel's
        module and file, or None; ``reason``: why this one; ``cpu``: the machine and
        the vector features that matter (AVX2, FMA, ...; None where unknown).
    """
    if not HAVE_COMPILED:
        kernel, module = "numpy", None
        reason = ("the compiled kernel is unavailable (built with "
                  f"DISTGMM_NO_COMPILED_KERNEL=1?): {_NO_KERNEL_REASON}")
    else:
        module = f"{_estep.__name__} ({getattr(_estep, '__file__', '?')})"
        if _estep.TARGET == "avx2-fma":
            kernel, reason = "compiled-avx2", "the CPU has AVX2 and FMA"
        else:
            kernel, reason = "compiled", f"generic build: {_AVX2_REASON}"
    return {"kernel": kernel, "module": module, "reason": reason, "cpu": _cpu()}


_CPU_FLAGS = ("sse2", "sse4_2", "avx", "avx2", "fma", "avx512f", "neon", "asimd")


def _cpu() -> dict:
    features = None
    try:  # Linux
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    features = [flag for flag in _CPU_FLAGS if flag in have]
                    break
    except OSError:
        pass
    if features is None and _estep is not None and _estep.cpu_has_avx2_fma():
        features = ["avx2", "fma"]
    return {"machine": platform.machine(), "processor": platform.processor() or None,
            "features": features}


_warned = False
_warn_lock = threading.Lock()


def warn_if_no_kernel(compute_dtype: str = "float64") -> bool:
    """Warn once per process, at the first float64 fit, when the compiled kernel is missing.

    Parameters
    ----------
    compute_dtype : {"float64", "float32"}
        The fit's; float32 fits run on numpy whatever is installed, so they do not warn.

    Returns
    -------
    bool
        Whether this call warned (a ``RuntimeWarning``).
    """
    global _warned
    if HAVE_COMPILED or compute_dtype != "float64":
        return False
    with _warn_lock:
        if _warned:
            return False
        _warned = True
    warnings.warn(NO_KERNEL_MESSAGE.format(reason=_NO_KERNEL_REASON), RuntimeWarning,
                  stacklevel=3)
    return True


TILE_ROWS = 4096
TILE_BYTES = 8 << 20


@dataclass(eq=False)
class SuffStats:
    """Additive statistics of a set of rows under fixed parameters.

    Attributes
    ----------
    covariance_type : str
    center : ndarray of shape (d,)
        Origin of first and second moments (identical in every chunk of a pass).
    shift : ndarray of shape (K, d)
        Per-component origins (about ``center``) of ``full`` second moments; zero from
        the E-step kernel.
    n_rows : int
    wsum : float
        Sum of sample weights (``n_rows`` when unweighted).
    loglik : float
        Sum of weighted per-row log-likelihoods.
    nk : ndarray of shape (K,)
        Sum of weighted responsibilities.
    sx : ndarray of shape (K, d)
        Sum of weighted responsibilities times ``x - center``.
    s2 : ndarray
        Second moments, see the module table.
    """

    covariance_type: str
    center: np.ndarray
    shift: np.ndarray
    n_rows: int
    wsum: float
    loglik: float
    nk: np.ndarray
    sx: np.ndarray
    s2: np.ndarray


def merge(a: SuffStats, b: SuffStats) -> SuffStats:
    """Add two statistics computed with the same parameters (associative)."""
    return SuffStats(
        a.covariance_type,
        a.center,
        a.shift,
        a.n_rows + b.n_rows,
        a.wsum + b.wsum,
        a.loglik + b.loglik,
        a.nk + b.nk,
        a.sx + b.sx,
        a.s2 + b.s2,
    )


def pack_stats(items: list[SuffStats]) -> tuple[SuffStats, np.ndarray] | None:
    """Many statistics of one pass as one float64 array (one row each), to travel as
    one buffer instead of one object each; ``None`` when they do not share a centre.

    Returns ``(template, rows)``; :func:`unpack_stats` gives back equal statistics,
    bit for bit (counts below 2**53 are exact in float64).
    """
    first = items[0]
    if any(it.covariance_type != first.covariance_type
           or (it.center is not first.center and not np.array_equal(it.center, first.center))
           or it.shift.any() or it.s2.shape != first.s2.shape for it in items):
        return None
    rows = np.empty((len(items), 3 + first.nk.size + first.sx.size + first.s2.size))
    for row, it in zip(rows, items):
        row[:3] = it.n_rows, it.wsum, it.loglik
        np.concatenate([it.nk.ravel(), it.sx.ravel(), it.s2.ravel()], out=row[3:])
    return first, rows


def unpack_stats(template: SuffStats, rows: np.ndarray) -> list[SuffStats]:
    """The statistics :func:`pack_stats` packed (views into ``rows``)."""
    k, d = template.sx.shape
    s2_shape = template.s2.shape
    a, b = 3 + k, 3 + k + k * d
    return [SuffStats(template.covariance_type, template.center, template.shift,
                      int(row[0]), float(row[1]), float(row[2]), row[3:a],
                      row[a:b].reshape(k, d), row[b:].reshape(s2_shape)) for row in rows]


def merge_all(items: list[SuffStats]) -> SuffStats:
    """Left-to-right merge of a list (fixed order, hence deterministic bits)."""
    return reduce(merge, items)


def _empty(covariance_type: str, center: np.ndarray, shift: np.ndarray) -> SuffStats:
    k, d = shift.shape
    s2_shape = {"full": (k, d, d), "tied": (d, d), "spherical": (k,)}.get(covariance_type, (k, d))
    return SuffStats(
        covariance_type, center, shift, 0, 0.0, 0.0,
        np.zeros(k), np.zeros((k, d)), np.zeros(s2_shape),
    )


def _second_moment(xc, rw, w, shift, covariance_type):
    if covariance_type == "full":
        out = np.empty((shift.shape[0], xc.shape[1], xc.shape[1]))
        z = scratch.buffer("moment.z", xc.shape)
        zr = scratch.buffer("moment.zr", xc.shape)
        for k in range(shift.shape[0]):
            np.subtract(xc, shift[k], out=z)
            np.multiply(z, rw[:, k : k + 1], out=zr)
            np.matmul(zr.T, z, out=out[k])
        return out
    if covariance_type == "tied":
        return (xc if w is None else xc * w[:, None]).T @ xc
    if covariance_type == "spherical":
        return rw.T @ np.einsum("ij,ij->i", xc, xc)
    return rw.T @ (xc * xc)


def accumulate(
    xc: np.ndarray, resp: np.ndarray, w: np.ndarray | None, stats: SuffStats
) -> None:
    """Add rows ``xc`` (already shifted by ``stats.center``) with responsibilities ``resp``.

    Parameters
    ----------
    xc : ndarray of shape (n, d), float64
    resp : ndarray of shape (n, K)
        Responsibilities (rows sum to one), not yet weighted.
    w : ndarray of shape (n,) or None
        Sample weights.
    stats : SuffStats
        Updated in place.
    """
    rw = resp if w is None else resp * w[:, None]
    stats.n_rows += xc.shape[0]
    stats.wsum += float(xc.shape[0] if w is None else w.sum())
    stats.nk += rw.sum(axis=0)
    stats.sx += rw.T @ xc
    stats.s2 += _second_moment(xc, rw, w, stats.shift, stats.covariance_type)


def _tiles(n: int, tile_rows: int):
    for start in range(0, n, tile_rows):
        yield start, min(start + tile_rows, n)


def shifted_tiles(X: np.ndarray, origin, row_start: int, tile_rows: int = TILE_ROWS):
    """``(a, b, X[a:b] - origin)`` in float64, tile by tile, each checked finite.

    Tiles keep a task's temporaries to a few MiB whatever the chunk size. The shifted
    tile is a scratch buffer, overwritten by the next tile: use it, do not keep it.
    """
    n, d = X.shape
    buf = scratch.buffer("shifted_tiles", (min(tile_rows, n), d))
    for a, b in _tiles(n, tile_rows):
        xc = buf[: b - a]
        np.subtract(X[a:b], origin, out=xc)
        if not np.isfinite(xc).all():
            raise_nonfinite(X[a:b], row_start + a)
        yield a, b, xc


def _weights_tile(w, a, b):
    return None if w is None else np.asarray(w[a:b], dtype=np.float64)


_EXP_FLOOR = {"d": -700.0, "f": -80.0}


def auto_tile_rows(n_feature_rows: int, itemsize: int = 8) -> int:
    """Rows per tile: the feature tile ``F`` near ``TILE_BYTES``, within [512, 8192]."""
    return int(np.clip(TILE_BYTES // (itemsize * n_feature_rows), 512, 8192))


class _Workspace:
    """Buffers of the E-step, reused by every tile and by later chunks of one thread.

    Allocating per tile costs a page-faulting ``mmap`` per temporary on workers that run
    with ``MALLOC_TRIM_THRESHOLD_`` set (Dask's default), which tripled the kernel time
    (see :mod:`distgmm.numerics.scratch`).
    """

    @classmethod
    def get(cls, n_feature_rows: int, k: int, d: int, tile: int, tied: bool,
            dtype: str) -> _Workspace:
        """This thread's workspace for these shapes.

        Kept per shape, so the candidates of a shared sweep pass (other ``K``, other
        types) each find theirs; the large feature tile is shared by every ``K``.
        """
        cache = scratch.cache()
        key = (n_feature_rows, k, d, tile, tied, dtype)
        ws = cache.get(key)
        if ws is None:
            fkey = ("F", n_feature_rows, d, tile, dtype)
            if fkey not in cache:
                cache[fkey] = np.empty((n_feature_rows, tile), dtype)
                cache[fkey][d] = 1.0
            ws = cache[key] = cls(cache[fkey], k, d, tied)
        return ws

    def __init__(self, F: np.ndarray, k: int, d: int, tied: bool):
        n_feature_rows, tile = F.shape
        self.F = F  # rows 0..d-1 and d+1.. are rewritten per tile; row d stays ones
        self.L = np.empty((k, tile), F.dtype)
        self.acc = np.empty((k, n_feature_rows), F.dtype)
        self.cmax = np.empty(tile, F.dtype)
        self.csum = np.empty(tile, F.dtype)
        self.Y = np.empty((d, tile), F.dtype) if tied else None
        self.xx = np.empty((d, d), F.dtype) if tied else None


def _normalize_columns(L: np.ndarray, w: np.ndarray | None, ws: _Workspace) -> np.ndarray:
    """Columns of ``L`` become responsibilities times ``w``; returns their logsumexp.

    The returned array is a view into the workspace.
    """
    t = L.shape[1]
    cmax, csum = ws.cmax[:t], ws.csum[:t]
    np.max(L, axis=0, out=cmax)
    cmax[~np.isfinite(cmax)] = np.nan  # a row of -inf (or NaN) is reported by the caller
    L -= cmax
    # exp underflowing to subnormals or zero takes numpy's slow path (~10% of the kernel
    # on well-separated data): floor at exp(-700) ~ 1e-304 (float32: exp(-80)) of the
    # row's largest term, which no statistic can see; the M-step counts such mass as
    # none (mstep.EMPTY_SHARE)
    np.maximum(L, _EXP_FLOOR[L.dtype.char], out=L)
    np.exp(L, out=L)
    np.sum(L, axis=0, out=csum)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.divide(1.0, csum) if w is None else w / csum
        L *= scale
        np.log(csum, out=csum)
    csum += cmax
    return csum


def compiled_tile_rows(covariance_type: str, n_features: int) -> int:
    """Rows per sub-tile of the compiled kernel: its part of ``F`` in memory near 384
    KiB, within L2 cache (``full`` keeps only ``x`` and the ones there), at most 256."""
    n_f = n_features + 1 if covariance_type == "full" else n_feature_rows(covariance_type,
                                                                          n_features)
    return min(max((49152 // n_f) // 8 * 8, 8), 256)  # plain ints: called per chunk


def chunk_stats(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    params: GMMParams,
    compute_dtype: str = "float64",
    tile_rows: int | None = None,
) -> SuffStats:
    """Fused E-step over one chunk: responsibilities -> sufficient statistics.

    Each tile of rows is scored by one product with the natural parameters and its
    statistics accumulated by a second (see :mod:`distgmm.numerics.features`); the tile
    is touched once. In float64 the compiled kernel (``_estep.c``) does this over
    sub-tiles that stay in cache; without it, and for ``"float32"``,
    :func:`chunk_stats_numpy` does it with numpy GEMMs over larger tiles.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Any float dtype.
    sample_weight : ndarray of shape (n,) or None
    row_start : int
        Global index of the chunk's first row (for error messages).
    params : GMMParams
        Current parameters.
    compute_dtype : {"float64", "float32"}
        Precision of the tile arithmetic (the products, the exponentials). With
        ``"float32"`` each tile's sums are still added up in float64; expect relative
        errors near 1e-6 instead of 1e-15.
    tile_rows : int, optional
        Rows per tile; default from :func:`compiled_tile_rows` (compiled kernel) or
        :func:`auto_tile_rows` (numpy).

    Returns
    -------
    SuffStats
        Second moments about the centre (``shift`` is zero).
    """
    if compute_dtype == "float64" and HAVE_COMPILED:
        return chunk_stats_compiled(X, sample_weight, row_start, params, tile_rows)
    return chunk_stats_numpy(X, sample_weight, row_start, params, compute_dtype, tile_rows)


def chunk_stats_compiled(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    params: GMMParams,
    tile_rows: int | None = None,
) -> SuffStats:
    """:func:`chunk_stats` in float64 by the compiled kernel (``HAVE_COMPILED``)."""
    return row_stats(chunk_stats_row(X, sample_weight, row_start, params, tile_rows), params)


def row_width(params: GMMParams) -> int:
    """Length of a :func:`chunk_stats_row`."""
    k, d = params.means.shape
    ct = params.covariance_type
    return 3 + k * n_feature_rows(ct, d) + (d * d if ct == "tied" else 0)


def chunk_stats_row(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    params: GMMParams,
    tile_rows: int | None = None,
) -> np.ndarray:
    """:func:`chunk_stats_compiled` as one float64 row, as the kernel leaves it:
    ``[n_rows, wsum, loglik, acc (K x n_f, moments packed), X'X (tied only)]``.

    Rows add as :func:`merge` adds the statistics, entry for entry, so a pass can fold
    many small chunks' rows and turn only the folded ones into statistics
    (:func:`row_stats`) with the same bits.
    """
    return chunk_rows(X, sample_weight, (X.shape[0],), row_start, params, tile_rows)[0]


def chunk_rows(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    sizes,
    row_start: int,
    params: GMMParams,
    tile_rows: int | None = None,
) -> np.ndarray:
    """:func:`chunk_stats_row` of each of the consecutive chunks of ``sizes`` rows that
    make up ``X``, by one call of the compiled kernel (same bits as one call each).

    Parameters
    ----------
    X : ndarray of shape (sum(sizes), d)
    sample_weight : ndarray of shape (sum(sizes),) or None
    sizes : sequence of int
        Rows of each chunk, in order.
    row_start : int
        Global index of ``X``'s first row (for error messages).
    params : GMMParams
    tile_rows : int, optional

    Returns
    -------
    ndarray of shape (len(sizes), row_width(params))
        Chunk ``i``'s row in row ``i``.
    """
    ct = params.covariance_type
    center, nat = centered_natural_params(params)
    tile = int(tile_rows or compiled_tile_rows(ct, X.shape[1]))
    X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
    w = None if sample_weight is None else np.ascontiguousarray(sample_weight, np.float64)
    if len(sizes) == 1:  # chunk_stats_row's: a microsecond less per chunk
        offsets = np.array((0, sizes[0]), np.int64)
    else:
        offsets = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
    rows = np.empty((len(sizes), row_width(params)))
    leaf, bad = _estep.estep_rows(
        X, w, offsets, np.ascontiguousarray(center, np.float64), nat.W, nat.tied_factor,
        covariance_code(ct), tile, rows,
    )
    if leaf >= 0:  # the sub-tile from bad_row, within its chunk
        a = int(offsets[leaf]) + bad
        raise_nonfinite(X[a : min(a + tile, int(offsets[leaf + 1]))], row_start + a)
    return rows


def row_stats(row: np.ndarray, params: GMMParams) -> SuffStats:
    """The statistics of a (folded) :func:`chunk_stats_row`."""
    ct = params.covariance_type
    k, d = params.means.shape
    center, _ = centered_natural_params(params)
    n_f = n_feature_rows(ct, d)
    nk, sx, s2 = unpack_moments(row[3 : 3 + k * n_f].reshape(k, n_f), ct, d)
    if ct == "tied":
        s2 = row[3 + k * n_f :].reshape(d, d).copy()
    return SuffStats(ct, center, np.zeros((k, d)), int(row[0]), float(row[1]), float(row[2]),
                     nk, sx, s2)


def chunk_stats_numpy(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    params: GMMParams,
    compute_dtype: str = "float64",
    tile_rows: int | None = None,
) -> SuffStats:
    """:func:`chunk_stats` with numpy GEMMs over tiles of ``tile_rows`` rows.

    Parameters and result as in :func:`chunk_stats`; ``X`` is converted tile by tile to
    ``compute_dtype`` (float32 runs at about twice the speed of float64 here), and
    ``tile_rows`` defaults to :func:`auto_tile_rows`. Each tile is scored by one GEMM
    against the natural parameters and its statistics accumulated by a second GEMM; no
    buffer is allocated per tile.
    """
    ct = params.covariance_type
    k, d = params.means.shape
    center, nat = centered_natural_params(params)
    dt = np.dtype(compute_dtype)
    W = nat.W.astype(dt, copy=False)
    tied_factor = None if nat.tied_factor is None else nat.tied_factor.astype(dt, copy=False)
    shift = center.astype(dt)[:, None]
    n_f = n_feature_rows(ct, d)
    tile = max(1, min(tile_rows or auto_tile_rows(n_f, dt.itemsize), X.shape[0]))
    ws = _Workspace.get(n_f, k, d, tile, ct == "tied", dt.name)
    stats = _empty(ct, center, np.zeros((k, d)))
    acc = np.zeros((k, n_f))
    for a, b in _tiles(X.shape[0], tile):
        t = b - a
        F, L = ws.F[:, :t], ws.L[:, :t]
        np.subtract(X[a:b].T, shift, out=F[:d], casting="same_kind")
        fill_quadratic(F, ct, d)
        np.matmul(W, F, out=L)
        if tied_factor is not None:
            Y = ws.Y[:, :t]
            np.matmul(tied_factor, F[:d], out=Y)
            Y *= Y
            L -= 0.5 * Y.sum(axis=0)
        w = _weights_tile(sample_weight, a, b)
        lpn = _normalize_columns(L, w, ws)
        ll = lpn.sum(dtype=np.float64) if w is None else w @ lpn
        if not np.isfinite(ll):
            raise_nonfinite(X[a:b], row_start + a)
        stats.loglik += float(ll)
        stats.n_rows += t
        stats.wsum += float(t if w is None else w.sum())
        acc += np.matmul(L, F.T, out=ws.acc)
        if ct == "tied":
            xw = F[:d] if w is None else F[:d] * w.astype(F.dtype)
            stats.s2 += np.matmul(xw, F[:d].T, out=ws.xx)
    nk, sx, s2 = unpack_moments(acc, ct, d)
    stats.nk += nk
    stats.sx += sx
    if s2 is not None:
        stats.s2 += s2
    return stats


def resp_stats(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    resp_fn,
    center: np.ndarray,
    shift_means: np.ndarray,
    covariance_type: str,
    tile_rows: int = TILE_ROWS,
) -> SuffStats:
    """Statistics for responsibilities given by ``resp_fn`` (initialisation passes).

    ``resp_fn(xc, row_start)`` returns the (n, K) responsibilities of the shifted tile
    ``xc`` whose first row has global index ``row_start``.
    """
    stats = _empty(covariance_type, center, shift_means - center)
    for a, b, xc in shifted_tiles(X, center, row_start, tile_rows):
        accumulate(xc, resp_fn(xc, row_start + a), _weights_tile(sample_weight, a, b), stats)
    return stats
