"""Initial parameters from data: sampled k-means, k-means||, k-means++, random, ...

The default ``kmeans`` start costs one pass (two for weighted data): it draws a random
sample of rows (by weight; the same rows whatever the chunking) and fits a mixture to it
on the driver from several k-means starts (scikit-learn's fit, or on a sample of larger
data the same fit by distgmm's kernel); the best fit starts EM on all the rows. Data
smaller than the sample is used whole.
Every pass over the data is one :meth:`Blocks.map_reduce`. All randomness derives from
one integer ``seed`` (drawn from ``random_state``) through row-addressed Philox streams,
so a rerun gives the same initial parameters.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from ..numerics.gaussian import CollapseError
from ..numerics.kmeans import (
    HardResp,
    KeyedRows,
    LloydStats,
    RandomResp,
    d2_sample,
    key_bound,
    lloyd_stats,
    nearest_counts,
    uniform_rows,
)
from ..numerics.mstep import m_step
from ..numerics.params import GMMParams
from ..numerics.suffstats import merge, resp_stats, warn_if_no_kernel
from ..options import INIT_PARAMS
from .blocks import Blocks, numpy_blocks
from .em import run_em

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


SAMPLE_ROWS_PER_COMPONENT = 500
MIN_SAMPLE_ROWS = 20_000
LOCAL_INITS = 4
LOCAL_MAX_INITS = 16
LOCAL_MAX_ITER = 100
LOCAL_TOL = 1e-3  # scikit-learn's default tol
# the local work (rows x K x covariance terms per init) of case A's sample (20,000 rows,
# K=8, d=16, full) times LOCAL_INITS: smaller problems get more starts for the same time
LOCAL_BUDGET = LOCAL_INITS * 20_000 * 8 * 16 * 16


def local_inits(n_rows: int, k: int, d: int, covariance_type: str, whole: bool) -> int:
    """k-means starts of the local mixture: ``LOCAL_INITS``, and where the sample is a
    sample of larger data, more (up to ``LOCAL_MAX_INITS``) when one start costs less
    than case A's. On data sampled whole the first start is scikit-learn's own (see
    :func:`sampled_start`), and more starts would cost small fits more than their EM."""
    if whole:
        return LOCAL_INITS
    terms = d * d if covariance_type in ("full", "tied") else d
    return int(np.clip(LOCAL_BUDGET // max(1, n_rows * k * terms), LOCAL_INITS,
                       LOCAL_MAX_INITS))


def sample_size(k: int) -> int:
    """Rows drawn for the sampled start: a component holding 1 % of the rows is seen
    about 200 times when K is small, and every component hundreds of times when K is
    large."""
    return max(MIN_SAMPLE_ROWS, SAMPLE_ROWS_PER_COMPONENT * k)


def draw_sample(blocks: Blocks, seed: int, n_sample: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass: ``n_sample`` rows drawn by weight without replacement.

    Returns the rows, their weights for a local fit (ones: drawing by weight already
    weighted them) and whether the sample is the whole data, i.e. holds every row of
    positive weight (then in its original order, with the rows' own weights). The rows
    depend only on their global indices, not on the chunking.

    Unit-weight rows: each chunk sends only its keys below :func:`key_bound`, a small
    share of ``n_sample`` rows, not up to ``n_sample`` rows each. The sample is the same;
    should fewer keys than asked for lie below the bound (probability 1e-31), the pass
    runs again without it.
    """
    # one row more than asked for: the sample is the whole data exactly when the pass
    # finds no more than n_sample rows of positive weight (zero-weight rows are never
    # drawn), and at exactly n_sample a pass asked for n_sample could not tell. The
    # n_sample smallest keys are the same rows, in the same order, either way
    n_keep = n_sample + 1
    unit = blocks.sample_weight is None and not blocks.omit_missing
    below = key_bound(blocks.n_samples, n_keep) if unit else np.inf
    res = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, 0), n_keep, True, below)
    if len(res.rows) < n_keep and below < np.inf:  # fewer keys below it than asked for
        res = blocks.map_reduce(uniform_rows, KeyedRows.merge, (seed, 0), n_keep, True)
    if len(res.rows) <= n_sample:
        order = np.argsort(res.row_ids, kind="stable")
        return res.rows[order], res.weights[order], True
    return res.rows[:n_sample], np.ones(n_sample), False


def _weighted_kmeans(rows: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    with _QUIET_KMEANS, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=LOCAL_INITS, random_state=seed % (2**31))
        return km.fit(rows, sample_weight=weights).cluster_centers_


def _one_local_fit(rows: np.ndarray, k: int, covariance_type: str, reg_covar: float,
                   random_state: int, whole: bool) -> tuple[GMMParams, float]:
    """One k-means-started EM fit on the sample: its parameters and lower bound.

    On data sampled whole it is scikit-learn's own fit for ``random_state``. On a
    sample of larger data it is the same fit by distgmm's own E-step kernel (the same
    k-means start, M-step and stopping rule, up to rounding): a quarter of
    scikit-learn's time on case A's sample, where the driver's starts held up the
    workers for 0.17 s of a 0.6 s fit.

    A start our kernel's M-step calls collapsed (scikit-learn keeps an empty component
    at ``10 * eps`` mass instead) is left to scikit-learn's fit, as before.
    """
    if not whole:
        try:
            return _own_local_fit(rows, k, covariance_type, reg_covar, random_state)
        except CollapseError:
            pass
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, covariance_type=covariance_type, reg_covar=reg_covar,
                         max_iter=LOCAL_MAX_ITER, random_state=random_state).fit(rows)
    return GMMParams(gm.weights_, gm.means_, gm.precisions_cholesky_, covariance_type,
                     gm.covariances_), float(gm.lower_bound_)


def _own_local_fit(rows: np.ndarray, k: int, covariance_type: str, reg_covar: float,
                   random_state: int) -> tuple[GMMParams, float]:
    from sklearn.cluster import KMeans

    # scikit-learn's mixture starts from KMeans(n_init=1) seeded by its RandomState
    km = KMeans(n_clusters=k, n_init=1, random_state=np.random.RandomState(random_state))
    blocks = numpy_blocks(rows)
    start = _from_hard(blocks, km.fit(rows).cluster_centers_, covariance_type, reg_covar)
    fit = run_em(blocks, start, tol=LOCAL_TOL, max_iter=LOCAL_MAX_ITER, reg_covar=reg_covar)
    return fit.params, float(fit.lower_bound)


def _local_mixture(rows: np.ndarray, k: int, covariance_type: str, reg_covar: float,
                   seed: int, random_state: int | None = None,
                   whole: bool = False) -> GMMParams:
    """The best of :func:`local_inits` k-means-started EM fits on the sample (in memory).

    The first start draws from ``random_state`` (default: from ``seed``), the others
    from seeds derived from ``seed``; each is one :func:`_one_local_fit`, run side by
    side on the driver's cores (the workers are idle meanwhile). The best lower bound
    wins, the earliest start on a tie, so the result does not depend on the threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    n_init = local_inits(len(rows), k, rows.shape[1], covariance_type, whole)
    first = seed % (2**31) if random_state is None else random_state
    seeds = [first, *(int(s) for s in np.random.default_rng(seed % (2**31)).integers(
        0, 2**31 - 1, n_init - 1))]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if not whole:  # run_em's once-per-process kernel warning, outside the "ignore" below
        warn_if_no_kernel("float64")
    with _QUIET_KMEANS, warnings.catch_warnings(), ThreadPoolExecutor(
            max(1, min(n_init, cores)), thread_name_prefix="distgmm-local") as pool:
        warnings.simplefilter("ignore")  # not converging on the sample is fine: a start
        fits = list(pool.map(lambda s: _one_local_fit(rows, k, covariance_type, reg_covar,
                                                      s, whole), seeds))
    return fits[max(range(len(fits)), key=lambda i: (fits[i][1], -i))][0]


def sampled_start(blocks: Blocks, k: int, covariance_type: str, reg_covar: float, seed: int,
                  n_sample: int | None = None,
                  local_random_state: int | None = None) -> GMMParams:
    """The default ``kmeans`` start: at most two passes over the data.

    One pass draws a random sample of rows (:func:`draw_sample`); on the driver,
    a mixture with :func:`local_inits` k-means starts (:func:`_one_local_fit`) is fitted
    to the sample and the best fit starts EM on the whole data. Weighted data small
    enough to be sampled whole is clustered by weighted k-means instead, and one more
    pass turns its labels into the first statistics (scikit-learn's mixture takes no
    weights). Fewer distinct rows than components: padded centres, so EM says so.

    ``local_random_state`` seeds the local fit (the estimator passes its own integer
    ``random_state`` for the first restart): on data sampled whole, in its order, the
    first local start is then scikit-learn's own default start for that
    ``random_state``, and the best of the local starts is never below it.
    """
    m = sample_size(k) if n_sample is None else n_sample
    rows, weights, whole = draw_sample(blocks, seed, m)
    unique = _unique_rows(rows)
    if len(unique) <= k:
        centers = np.vstack([unique, np.repeat(unique[:1], k - len(unique), axis=0)])
        return _from_hard(blocks, centers, covariance_type, reg_covar)
    if whole and not np.all(weights == weights[0]):
        return _from_hard(blocks, _weighted_kmeans(rows, weights, k, seed),
                          covariance_type, reg_covar)
    return _local_mixture(rows, k, covariance_type, reg_covar, seed, local_random_state,
                          whole)


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
    local_random_state: int | None = None,
) -> GMMParams:
    """Initial parameters by ``init_params``, as scikit-learn's ``_initialize`` does.

    Responsibilities from the initialiser (hard k-means labels, random, or one row per
    component) go through the M-step; weights are divided by the total sample weight.
    ``local_random_state``: see :func:`sampled_start` (``kmeans`` only).
    """
    k = n_components
    if init_params == "kmeans":
        return sampled_start(blocks, k, covariance_type, reg_covar, seed,
                             local_random_state=local_random_state)
    if init_params == "k-means||":
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
