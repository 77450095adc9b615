"""Generating rows from a fitted mixture on the cluster, chunk by chunk.

Each output chunk is one task that draws its rows (:mod:`distgmm.numerics.sampling`):
the graph holds one small task per chunk and nothing of the sample's size passes
through the driver. The rows depend on the seed only, not on ``chunk_rows``.
"""

from __future__ import annotations

import numpy as np

from ..numerics.sampling import (
    BLOCK_ROWS,
    SamplingPlan,
    sample_rows,
    sampling_plan,
    seed_entropy,
)

CHUNK_BYTES = 64 << 20
"""Default chunk: about this many bytes of rows, in whole logical blocks."""


def default_chunk_rows(n_features: int) -> int:
    """Whole logical blocks making about :data:`CHUNK_BYTES` of float64 rows."""
    return max(1, CHUNK_BYTES // (8 * max(1, n_features) * BLOCK_ROWS)) * BLOCK_ROWS


def row_chunks(n_samples: int, chunk_rows: int) -> tuple[int, ...]:
    """Chunk sizes: ``chunk_rows`` each, the last one shorter."""
    full, rest = divmod(n_samples, chunk_rows)
    return (chunk_rows,) * full + ((rest,) if rest else ())


def _chunk(plan: SamplingPlan, entropy: int, block_info=None) -> np.ndarray:
    (start, stop), _ = block_info[None]["array-location"]
    x, comp = sample_rows(plan, entropy, start, stop)
    return np.column_stack([x, comp.astype(np.float64)])


def plan_of(model) -> SamplingPlan:
    """The sampling plan of any fitted mixture (``weights_``, ``means_``,
    ``covariances_``, ``covariance_type``)."""
    missing = [a for a in ("weights_", "means_", "covariances_") if not hasattr(model, a)]
    if missing:
        raise ValueError(f"the model has no {', '.join(missing)}: fit it (or load a "
                         "complete model file) before sampling.")
    return sampling_plan(model.weights_, model.means_, model.covariances_,
                         model.covariance_type)


def sample_mixture(model, n_samples: int, *, random_state=0, chunk_rows: int | None = None):
    """``n_samples`` rows drawn from a fitted mixture, as lazy dask arrays.

    Parameters
    ----------
    model : fitted mixture
        Anything with ``weights_``, ``means_``, ``covariances_`` and
        ``covariance_type`` (:class:`distgmm.GaussianMixture`, a loaded model, ...).
    n_samples : int
        At least 1.
    random_state : int or None, default=0
        The seed; the same seed gives the same rows whatever ``chunk_rows``. None
        draws fresh entropy (a sample that cannot be drawn again).
    chunk_rows : int, optional
        Rows per chunk (one task each); default about 64 MiB of rows.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features), float64
    component : dask.array.Array of shape (n_samples,), int32
        The component each row was drawn from. Both come from the same tasks:
        compute them together to draw each chunk once.
    """
    import dask.array as da

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r}: give an int >= 1.")
    plan = plan_of(model)
    d = plan.n_features
    rows = default_chunk_rows(d) if chunk_rows is None else chunk_rows
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows!r}: give an int >= 1.")
    both = da.map_blocks(_chunk, plan, seed_entropy(random_state),
                         chunks=(row_chunks(int(n_samples), int(rows)), (d + 1,)),
                         dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
    return both[:, :d], both[:, d].astype(np.int32)
