"""Initial parameters from data: k-means||, k-means++, random, random_from_data.

Every pass over the data is one :meth:`Blocks.map_reduce`. All randomness derives from
one integer ``seed`` (drawn from ``random_state``) through row-addressed Philox streams,
so a rerun gives the same initial parameters.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from ..numerics.kmeans import (
    HardResp,
    KeyedRows,
    LloydStats,
    RandomResp,
    d2_sample,
    lloyd_stats,
    nearest_counts,
    uniform_rows,
)
from ..numerics.mstep import m_step
from ..numerics.params import GMMParams
from ..numerics.suffstats import merge, resp_stats
from ..options import INIT_PARAMS
from .blocks import Blocks

# catch_warnings swaps the process-wide filter list: two restarts' threads entering and
# leaving it interleaved would leave "ignore" installed for good, so one at a time
_QUIET_KMEANS = threading.Lock()


def _add(a, b):
    return a + b


def _unique_rows(rows: np.ndarray) -> np.ndarray:
    _, idx = np.unique(rows, axis=0, return_index=True)
    return rows[np.sort(idx)]


def _local_kmeans(candidates: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    unique = _unique_rows(candidates)
    if len(unique) <= k:
        return unique
    with _QUIET_KMEANS, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=3, random_state=seed % (2**31))
        return km.fit(candidates, sample_weight=np.maximum(weights, 1e-12)).cluster_centers_


def kmeans_parallel(
    blocks: Blocks,
    k: int,
    seed: int,
    rounds: int = 5,
    oversampling: float = 2.0,
    lloyd_passes: int = 5,
    lloyd_tol: float = 1e-4,
) -> np.ndarray:
    """k-means|| (Bahmani et al. 2012) centres, refined by distributed Lloyd passes.

    Parameters
    ----------
    blocks : Blocks
    k : int
        Number of centres.
    seed : int
    rounds : int
        Sampling rounds; each draws about ``oversampling * k`` candidates.
    oversampling : float
    lloyd_passes : int
        At most this many distributed Lloyd passes after the local clustering.
    lloyd_tol : float
        Stop Lloyd when the inertia improves by less than this fraction.

    Returns
    -------
    ndarray of shape (k, n_features)
    """
    ell = oversampling * k
    pool = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, 0), k)
    cands = pool.rows[:1]
    for r in range(1, rounds + 1):
        n_keep = int(3 * ell) + 16
        res = blocks.map_reduce(d2_sample, KeyedRows.merge, (seed, r), n_keep, cands, False)
        if res.mass <= 0:
            break
        cands = np.vstack([cands, res.rows[res.keys < ell / res.mass]])
    if len(cands) < k:
        cands = _unique_rows(np.vstack([cands, pool.rows]))
    cand_w = blocks.map_reduce(nearest_counts, _add, cands)
    centers = _local_kmeans(cands, cand_w, k, seed)
    if len(centers) < k:  # fewer distinct points than components: pad, let EM say so
        centers = np.vstack([centers, np.repeat(centers[:1], k - len(centers), axis=0)])
    prev = np.inf
    for _ in range(lloyd_passes):
        ls: LloydStats = blocks.map_reduce(lloyd_stats, LloydStats.merge, centers)
        new = centers.copy()
        full = ls.counts > 0
        new[full] = ls.origin + ls.sums[full] / ls.counts[full, None]
        spare = iter(ls.far.rows)
        for j in np.flatnonzero(~full):  # re-seed empty clusters at the farthest rows
            new[j] = next(spare, centers[j])
        centers = new
        if prev - ls.inertia <= lloyd_tol * ls.inertia and full.all():
            break
        prev = ls.inertia
    return centers


def kmeans_plusplus(blocks: Blocks, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding (D^2 sampling), one pass over the data per centre."""
    centers = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, 0), 1).rows
    for r in range(1, k):
        res = blocks.map_reduce(d2_sample, KeyedRows.merge, (seed, r), 1, centers, True)
        if res.mass <= 0:
            res = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, r), k)
            centers = np.vstack([centers, res.rows[r % len(res.rows)][None]])
            continue
        centers = np.vstack([centers, res.rows[:1]])
    return centers


def _from_hard(blocks: Blocks, centers: np.ndarray, covariance_type: str, reg_covar: float):
    center = centers.mean(axis=0)
    stats = blocks.map_reduce(
        resp_stats, merge, HardResp(centers - center), center, centers, covariance_type
    )
    return m_step(stats, reg_covar, weight_norm=stats.wsum)


def _identity_resp(xc: np.ndarray, row_start: int) -> np.ndarray:
    return np.eye(len(xc))


def _from_points(rows: np.ndarray, total: float, covariance_type: str, reg_covar: float):
    """One component per chosen row, as scikit-learn's random_from_data / k-means++."""
    center = rows.mean(axis=0)
    stats = resp_stats(rows, None, 0, _identity_resp, center, rows, covariance_type)
    return m_step(stats, reg_covar, weight_norm=total)


def initial_params(
    blocks: Blocks,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    init_params: str,
    seed: int,
) -> GMMParams:
    """Initial parameters by ``init_params``, as scikit-learn's ``_initialize`` does.

    Responsibilities from the initialiser (hard k-means labels, random, or one row per
    component) go through the M-step; weights are divided by the total sample weight.
    """
    k = n_components
    if init_params == "kmeans":
        return _from_hard(blocks, kmeans_parallel(blocks, k, seed), covariance_type, reg_covar)
    if init_params == "random":
        center = blocks.first_row()  # any common origin near the data avoids cancellation
        stats = blocks.map_reduce(
            resp_stats, merge, RandomResp((seed, 0), k), center,
            np.broadcast_to(center, (k, blocks.n_features)), covariance_type,
        )
        return m_step(stats, reg_covar, weight_norm=stats.wsum)
    if init_params == "random_from_data":
        rows = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, 0), k).rows
    elif init_params == "k-means++":
        rows = kmeans_plusplus(blocks, k, seed)
    else:
        raise ValueError(f"init_params={init_params!r} is not one of {INIT_PARAMS}.")
    # each chosen row starts a component of unit mass; weights divided by the total
    # sample weight, as scikit-learn divides by n_samples
    return _from_points(rows, blocks.total_weight(), covariance_type, reg_covar)
