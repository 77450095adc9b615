"""The outlier stage of a job (``model.outliers`` / ``--outliers``): after the fit, one
pass sets the fitted model's log-density threshold (exact; see
:mod:`distgmm.numerics.outliers`); the scoring pass then writes the ``outlier``
column and counts the flagged rows."""

from __future__ import annotations

import time

from ..io.sources import Dataset
from ..numerics.outliers import flagged_rows
from .events import Reporter


def check_outliers(spec, dataset: Dataset) -> None:
    """Refuse, before the fit, a fraction the exact threshold pass cannot hold."""
    if spec.model.outliers is not None:
        flagged_rows(spec.model.outliers, dataset.n_samples)


def outlier_stage(spec, model, dataset: Dataset, reporter: Reporter) -> float | None:
    """Set ``model.outlier_threshold_`` (and ``outlier_fraction_``) from the data in
    one pass; its seconds, or None when the job asks for no outliers."""
    fraction = spec.model.outliers
    if fraction is None:
        return None
    t0 = time.perf_counter()
    threshold = model.outlier_threshold(dataset.X, fraction)
    seconds = time.perf_counter() - t0
    reporter.event("outliers", f"outlier threshold {threshold:.6f} (log-density at the "
                   f"{fraction:g} quantile, exact) in {seconds:.1f} s",
                   threshold=threshold, fraction=fraction, seconds=round(seconds, 3))
    return seconds

