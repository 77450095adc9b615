"""The generic EM loop: exactly one pass over the data (one compute) per iteration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..numerics.mstep import m_step
from ..numerics.params import GMMParams
from ..numerics.suffstats import chunk_stats, merge, warn_if_no_kernel
from .blocks import Blocks


@dataclass
class EMResult:
    """Outcome of one EM run (one initialisation)."""

    params: GMMParams
    lower_bound: float
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


@dataclass
class FitState:
    """Where a fit stands: the seed of every restart and each restart's EM state.

    ``restarts[i]`` is ``None`` until restart ``i`` has finished its first iteration
    (its initialisation is simply redone on resume: it is deterministic).
    """

    seeds: list
    restarts: list


@dataclass(frozen=True)
class IterationInfo:
    """What a progress callback learns after each iteration."""

    n_iter: int
    lower_bound: float
    change: float
    seconds: float
    init: int = 0
    candidate: str = ""


def e_step(blocks: Blocks, params: GMMParams, compute_dtype: str = "float64"):
    """One pass: merged sufficient statistics under ``params``."""
    return blocks.map_reduce(chunk_stats, merge, params, compute_dtype)


def run_em(
    blocks: Blocks,
    params: GMMParams,
    *,
    tol: float,
    max_iter: int,
    reg_covar: float,
    compute_dtype: str = "float64",
    lower_bound: float = -np.inf,
    callback: Callable[[IterationInfo], None] | None = None,
    resume: EMResult | None = None,
    on_result: Callable[[EMResult], None] | None = None,
    send: Callable[[object], GMMParams] | None = None,
    update: Callable[[object, GMMParams], tuple[object, float]] | None = None,
) -> EMResult:
    """Iterate E- and M-steps until the lower bound changes by less than ``tol``.

    The lower bound of iteration ``t`` is the weighted mean log-likelihood under the
    parameters entering that iteration, as in scikit-learn.

    Parameters
    ----------
    blocks : Blocks
    params : GMMParams
        Initial parameters.
    tol : float
    max_iter : int
    reg_covar : float
    compute_dtype : {"float64", "float32"}
        Precision of the E-step's tile arithmetic (statistics are summed in float64).
    lower_bound : float
        Lower bound before the first iteration (``-inf``, or the previous fit's for a
        warm start).
    callback : callable, optional
        Called with an :class:`IterationInfo` after every iteration.
    resume : EMResult, optional
        Continue this run (restored from a checkpoint) instead of starting from
        ``params``; a converged run is returned as is.
    on_result : callable, optional
        Called with the :class:`EMResult` after every iteration (for checkpoints).
    send : callable, optional
        ``send(params) -> GMMParams``: what the E-step pass is sent for the current
        ``params`` (default: ``params`` themselves). Another estimator's state (the
        variational posterior) goes through the same loop this way.
    update : callable, optional
        ``update(stats, sent) -> (params, lower_bound)``: the M-step and the lower
        bound from the pass's merged statistics (default: EM's M-step, and the mean
        log-likelihood).

    Returns
    -------
    EMResult
    """
    warn_if_no_kernel(compute_dtype)  # once per process: a build without _estep.c
    result = EMResult(params, lower_bound) if resume is None else resume
    if result.converged:
        return result
    for n_iter in range(result.n_iter + 1, max_iter + 1):
        t0 = time.perf_counter()
        prev = result.lower_bound
        sent = result.params if send is None else send(result.params)
        stats = e_step(blocks, sent, compute_dtype)
        if update is None:
            result.params = m_step(stats, reg_covar)
            result.lower_bound = stats.loglik / stats.wsum
        else:
            result.params, result.lower_bound = update(stats, sent)
        result.lower_bounds.append(result.lower_bound)
        result.n_iter = n_iter
        change = result.lower_bound - prev
        if callback is not None:
            callback(IterationInfo(n_iter, result.lower_bound, change, time.perf_counter() - t0))
        result.converged = abs(change) < tol
        if on_result is not None:
            on_result(result)
        if result.converged:
            break
    return result
