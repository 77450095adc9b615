"""Drawing rows from a Gaussian mixture in fixed logical blocks (pure numpy).

Row ``i`` of a sample lives in logical block ``i // BLOCK_ROWS``; block ``b`` is
drawn from its own generator, seeded by ``SeedSequence(entropy, spawn_key=(b,))``
(the ``b``-th child of the seed, made without spawning the others). A chunk of any
size draws the whole blocks it overlaps and keeps its rows, so the rows depend on the
seed only: never on how the output is chunked, nor on the total number of rows
(a sample of ``n`` rows is the first ``n`` rows of any larger one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_ROWS = 65536


@dataclass(frozen=True)
class SamplingPlan:
    """What a chunk needs to draw rows: the component CDF, means and factors ``A`` with
    ``A A^T = Sigma`` (a Cholesky factor; square roots for diag and spherical).

    Attributes
    ----------
    cdf : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    factors : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    covariance_type : str
    """

    cdf: np.ndarray
    means: np.ndarray
    factors: np.ndarray
    covariance_type: str

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])


def _cdf(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("the model's weights are not a probability vector (finite, "
                         ">= 0, positive sum): refit or repair the model.")
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0  # rounding must not leave a draw beyond the last component
    return cdf


def _factors(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    cov = np.asarray(covariances, dtype=np.float64)
    if not np.isfinite(cov).all():
        raise ValueError("the model's covariances are not finite: refit or repair it.")
    if covariance_type in ("diag", "spherical"):
        if (cov < 0).any():
            raise ValueError("the model has negative variances: refit or repair it.")
        return np.sqrt(cov)
    try:
        return np.linalg.cholesky(cov)  # (d, d) tied or (K, d, d) full
    except np.linalg.LinAlgError:
        raise ValueError("a covariance of the model is not positive definite: refit "
                         "or repair the model.") from None


def sampling_plan(weights, means, covariances, covariance_type: str) -> SamplingPlan:
    """The plan of a fitted mixture (``weights_``, ``means_``, ``covariances_``)."""
    means = np.asarray(means, dtype=np.float64)
    return SamplingPlan(_cdf(weights), means, _factors(covariances, covariance_type),
                        covariance_type)


def _shape(plan: SamplingPlan, z: np.ndarray, k: int) -> np.ndarray:
    """``z`` (rows of standard normals) mapped to component ``k``'s covariance."""
    ct, a = plan.covariance_type, plan.factors
    if ct == "full":
        return z @ a[k].T
    if ct == "tied":
        return z @ a.T
    return z * a[k]  # diag: per feature; spherical: a scalar


def sample_block(plan: SamplingPlan, entropy: int, block: int,
                 block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """All rows of logical block ``block``: (rows (B, d), components (B,) int32)."""
    seq = np.random.SeedSequence(entropy, spawn_key=(int(block),))
    rng = np.random.Generator(np.random.PCG64(seq))
    comp = np.searchsorted(plan.cdf, rng.random(block_rows), side="right")
    comp = np.minimum(comp, plan.cdf.size - 1).astype(np.int32)
    z = rng.standard_normal((block_rows, plan.n_features))
    x = np.empty_like(z)
    for k in np.unique(comp):
        rows = np.flatnonzero(comp == k)
        x[rows] = plan.means[k] + _shape(plan, z[rows], int(k))
    return x, comp


def sample_rows(plan: SamplingPlan, entropy: int, start: int, stop: int,
                block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. stop`` of the sample: (rows, components), whatever the chunking."""
    if stop <= start:
        return np.empty((0, plan.n_features)), np.empty(0, dtype=np.int32)
    first, last = start // block_rows, (stop - 1) // block_rows
    parts = [sample_block(plan, entropy, b, block_rows) for b in range(first, last + 1)]
    lo = start - first * block_rows
    x = np.concatenate([p[0] for p in parts])[lo: lo + stop - start]
    comp = np.concatenate([p[1] for p in parts])[lo: lo + stop - start]
    return x, comp


def seed_entropy(random_state) -> int:
    """The seed's entropy as an int (None: fresh entropy, returned so it can be reused)."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(
            random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state={random_state!r}: give an int >= 0 (or None).")
    return int(random_state)
