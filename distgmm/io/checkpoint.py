"""Checkpoints of a fit: the whole EM state after every iteration, for exact resume.

A checkpoint is one small JSON document (parameters are O(K·d²) numbers; Python's
float repr round-trips exactly) written atomically: a temporary file renamed over the
old one on a local filesystem; a single PUT, which object stores apply whole, for URLs.
It records an identity (the job's fit settings and a fingerprint of the input); a
checkpoint with another identity is refused, never silently reused.
"""

from __future__ import annotations

import json
import posixpath
import uuid

import numpy as np

from ..numerics.params import GMMParams
from ..numerics.variational import VBParams
from ..parallel.em import EMResult, FitState

FORMAT = "distgmm-checkpoint"
VERSION = 2


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to another job or another input."""


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


def _result_from(doc: dict | None) -> EMResult | None:
    if doc is None:
        return None
    return EMResult(_params_from(doc["params"]), float(doc["lower_bound"]),
                    [float(v) for v in doc["lower_bounds"]], int(doc["n_iter"]),
                    bool(doc["converged"]))


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
    """

    def __init__(self, url: str, identity: dict, storage_options: dict | None = None):
        import fsspec

        self.url, self.identity = url, json.loads(json.dumps(identity))
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
            doc = json.loads(self.fs.cat_file(self.path))
            ok = doc.get("format") == FORMAT and doc.get("version") == VERSION
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise CheckpointMismatch(
                f"{self.url} is not a distgmm checkpoint this version can read: delete it "
                "or rerun with --restart."
            )
        stored = doc["identity"]
        if stored != self.identity:
            keys = sorted(k for k in set(stored) | set(self.identity)
                          if stored.get(k) != self.identity.get(k))
            raise CheckpointMismatch(
                f"The checkpoint {self.url} belongs to a different {' and '.join(keys)}: "
                "rerun with --restart to start over, or run the original job."
            )
        state = doc["state"]
        return FitState([int(s) for s in state["seeds"]],
                        [_result_from(r) for r in state["restarts"]])

    def save(self, state: FitState) -> None:
        """Write ``state`` atomically (replacing the previous checkpoint)."""
        doc = {"format": FORMAT, "version": VERSION, "identity": self.identity,
               "state": {"seeds": [int(s) for s in state.seeds],
                         "restarts": [_result_doc(r) for r in state.restarts]}}
        data = json.dumps(doc).encode()
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
