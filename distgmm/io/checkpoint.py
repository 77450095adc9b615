"""Checkpoints of a fit: the whole EM state after every iteration, for exact resume.

A checkpoint is one small JSON document (parameters are O(K·d²) numbers; Python's
float repr round-trips exactly) written atomically: a temporary file renamed over the
old one on a local filesystem; a single PUT, which object stores apply whole, for URLs.
It records an identity (the job's fit settings and a fingerprint of the input); a
checkpoint with another identity is refused, never silently reused. It carries a
SHA-256 of its content, and what it holds is checked before it is used (see
:mod:`.integrity`): a damaged, edited or inconsistent checkpoint is refused with
:class:`CorruptCheckpoint`, as is one without a hash (an older distgmm's).
"""

from __future__ import annotations

import json
import posixpath
import uuid

import numpy as np

from ..numerics.params import GMMParams
from ..numerics.variational import VBParams, mixture_weights
from ..parallel.em import EMResult, FitState
from .integrity import (
    MAX_CHECKPOINT_BYTES,
    CorruptState,
    check_hash,
    check_history,
    check_params,
    dumps_with_hash,
    read_bounded,
)

FORMAT = "distgmm-checkpoint"
VERSION = 2


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to another job or another input."""


class CorruptCheckpoint(CheckpointMismatch):
    """The checkpoint is damaged, edited or inconsistent."""


_PARAM_KEYS = ("covariance_type", "weights", "means", "precisions_cholesky", "covariances")


def _params_doc(p: GMMParams | VBParams) -> dict:
    if isinstance(p, VBParams):
        return _vb_doc(p)
    return {"covariance_type": p.covariance_type, "weights": p.weights.tolist(),
            "means": p.means.tolist(), "precisions_cholesky": p.precisions_cholesky.tolist(),
            "covariances": None if p.covariances is None else p.covariances.tolist()}


def _params_from(doc: dict) -> GMMParams | VBParams:
    if doc.get("kind") == "bayes":
        return _vb_from(doc)
    cov = doc["covariances"]
    return GMMParams(np.asarray(doc["weights"], dtype=np.float64),
                     np.asarray(doc["means"], dtype=np.float64),
                     np.asarray(doc["precisions_cholesky"], dtype=np.float64),
                     doc["covariance_type"],
                     None if cov is None else np.asarray(cov, dtype=np.float64))


_VB_ARRAYS = ("weight_concentration", "mean_precision", "means", "degrees_of_freedom",
              "covariances", "precisions_cholesky")


def _vb_doc(p: VBParams) -> dict:
    """A BayesianGaussianMixture's EM state: its variational posterior."""
    return {"kind": "bayes", "covariance_type": p.covariance_type,
            "weight_concentration_prior_type": p.weight_concentration_prior_type,
            **{name: getattr(p, name).tolist() for name in _VB_ARRAYS}}


def _vb_from(doc: dict) -> VBParams:
    arrays = [np.asarray(doc[name], dtype=np.float64) for name in _VB_ARRAYS]
    return VBParams(*arrays, doc["covariance_type"], doc["weight_concentration_prior_type"])


def _result_doc(r: EMResult | None) -> dict | None:
    if r is None:
        return None
    return {"params": _params_doc(r.params), "lower_bound": r.lower_bound,
            "lower_bounds": list(r.lower_bounds), "n_iter": r.n_iter, "converged": r.converged}


def _result_from(doc, what: str, expect: dict) -> EMResult | None:
    """One restart's stored EM state, checked (:class:`CorruptState` if not sound)."""
    if doc is None:
        return None
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise CorruptState(f"{what}has no parameters")
    if params.get("kind") == "bayes":
        return _vb_result_from(doc, params, what, expect)
    missing = [k for k in _PARAM_KEYS if k not in params]
    if missing:
        raise CorruptState(f"{what}parameters lack {', '.join(missing)}")
    ct = params["covariance_type"]
    if expect.get("covariance_type", ct) != ct:
        raise CorruptState(f"{what}covariance_type is {ct!r}, the job's is "
                           f"{expect['covariance_type']!r}")
    shape = ((expect["n_components"], expect["n_features"])
             if "n_components" in expect and "n_features" in expect else None)
    w, mu, pc, cov = check_params(params["weights"], params["means"],
                                  params["precisions_cholesky"], ct, params["covariances"],
                                  what=what, shape=shape)
    fit = check_history(doc, tol=expect.get("tol"), max_iter=expect.get("max_iter"),
                        what=what, require_iteration=True)
    return EMResult(GMMParams(w, mu, pc, ct, cov), fit["lower_bound"], fit["lower_bounds"],
                    fit["n_iter"], fit["converged"])


def _vb_result_from(doc: dict, params: dict, what: str, expect: dict) -> EMResult:
    """A BayesianGaussianMixture restart's stored posterior, checked like a GMM's: its
    expected weights, means and precision factors, plus positive posterior counts."""
    missing = [k for k in (*_VB_ARRAYS, "covariance_type", "weight_concentration_prior_type")
               if k not in params]
    if missing:
        raise CorruptState(f"{what}parameters lack {', '.join(missing)}")
    try:
        vb = _vb_from(params)
    except (TypeError, ValueError) as e:
        raise CorruptState(f"{what}posterior arrays are garbled ({e})") from None
    for name in ("weight_concentration", "mean_precision", "degrees_of_freedom"):
        value = getattr(vb, name)
        if not (np.all(np.isfinite(value)) and np.all(value > 0)):
            raise CorruptState(f"{what}{name} is not finite and positive")
    ct = vb.covariance_type
    if expect.get("covariance_type", ct) != ct:
        raise CorruptState(f"{what}covariance_type is {ct!r}, the job's is "
                           f"{expect['covariance_type']!r}")
    shape = ((expect["n_components"], expect["n_features"])
             if "n_components" in expect and "n_features" in expect else None)
    try:
        weights = mixture_weights(vb)
    except (TypeError, ValueError, IndexError) as e:
        raise CorruptState(f"{what}weight_concentration is garbled ({e})") from None
    check_params(weights, vb.means, vb.precisions_cholesky, ct, vb.covariances, what=what,
                 shape=shape)
    fit = check_history(doc, tol=expect.get("tol"), max_iter=expect.get("max_iter"),
                        what=what, require_iteration=True)
    return EMResult(vb, fit["lower_bound"], fit["lower_bounds"], fit["n_iter"],
                    fit["converged"])


def _state_from(state, expect: dict) -> FitState:
    """The stored fit state, checked: one seed per restart, each restart sound."""
    if not isinstance(state, dict) or not isinstance(state.get("seeds"), list) \
            or not isinstance(state.get("restarts"), list):
        raise CorruptState("state lacks its seeds or restarts")
    seeds, restarts = state["seeds"], state["restarts"]
    if not seeds or len(seeds) != len(restarts):
        raise CorruptState(f"{len(seeds)} seed(s) for {len(restarts)} restart(s)")
    if len(seeds) > expect.get("n_init", len(seeds)):
        raise CorruptState(f"{len(seeds)} restarts, more than n_init={expect['n_init']}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32
               for s in seeds):
        raise CorruptState("a seed is not a 32-bit unsigned integer")
    return FitState(list(seeds), [_result_from(r, f"restart {i}: ", expect)
                                  for i, r in enumerate(restarts)])


class Checkpoint:
    """The checkpoint file of one job.

    Parameters
    ----------
    url : str
        File path or fsspec URL of the checkpoint document.
    identity : dict
        JSON-safe description of what the fit depends on (settings, input
        fingerprint); a stored checkpoint must match it to be resumed.
    storage_options : dict, optional
    expect : dict, optional
        What the stored state must agree with, where known: ``n_components``,
        ``n_features``, ``covariance_type``, ``n_init``, ``tol``, ``max_iter``.
    """

    def __init__(self, url: str, identity: dict, storage_options: dict | None = None, *,
                 expect: dict | None = None):
        import fsspec

        self.url, self.identity = url, json.loads(json.dumps(identity))
        self.expect = dict(expect or {})
        self.fs, self.path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.saves = 0

    @property
    def _local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def restore(self) -> FitState | None:
        """The stored state, ``None`` if there is none.

        Raises
        ------
        CheckpointMismatch
            The checkpoint was written for other settings or another input.
        """
        if not self.exists():
            return None
        try:
            doc = json.loads(read_bounded(self.fs, self.path, MAX_CHECKPOINT_BYTES))
            ok = doc.get("format") == FORMAT and doc.get("version") == VERSION
        except CorruptState as e:
            raise self.corrupt(str(e)) from None
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise CheckpointMismatch(
                f"{self.url} is not a distgmm checkpoint this version can read: delete it "
                "or rerun with --restart."
            )
        stored = doc.get("identity")
        if not isinstance(stored, dict):
            raise self.corrupt("it has no identity")
        if stored != self.identity:
            keys = sorted(k for k in set(stored) | set(self.identity)
                          if stored.get(k) != self.identity.get(k))
            raise CheckpointMismatch(
                f"The checkpoint {self.url} belongs to a different {' and '.join(keys)}: "
                "rerun with --restart to start over, or run the original job."
            )
        problem = check_hash(doc)
        if problem is not None:
            raise self.corrupt(problem)
        try:
            return _state_from(doc.get("state"), self.expect)
        except CorruptState as e:
            raise self.corrupt(str(e)) from None

    def corrupt(self, what: str) -> CorruptCheckpoint:
        """The one-line error for this checkpoint, saying what is wrong."""
        return CorruptCheckpoint(f"corrupt checkpoint {self.url}: {what}; rerun with "
                                 "--restart")

    def save(self, state: FitState) -> None:
        """Write ``state`` atomically (replacing the previous checkpoint)."""
        doc = {"format": FORMAT, "version": VERSION, "identity": self.identity,
               "state": {"seeds": [int(s) for s in state.seeds],
                         "restarts": [_result_doc(r) for r in state.restarts]}}
        data = dumps_with_hash(doc)
        parent = posixpath.dirname(self.path)
        self.fs.makedirs(parent, exist_ok=True)
        if self._local:
            import os

            tmp = posixpath.join(parent, f".{posixpath.basename(self.path)}.{uuid.uuid4().hex}")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        else:
            self.fs.pipe_file(self.path, data)
        self.saves += 1

    def clear(self) -> None:
        """Remove the checkpoint (after the results are published)."""
        if self.exists():
            self.fs.rm(self.path)
