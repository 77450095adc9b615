"""A ``distgmm predict`` run twice: the second finds its own published output and
exits 0, as ``fit`` and ``run`` do for the same job.

The identity of a prediction job is a fingerprint of the model's parameters, the
input and its options, and the output settings (credentials and ``overwrite`` left
out), written into ``metrics.json`` as ``job.fingerprint``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import numpy as np

from ..io.integrity import MAX_METRICS_BYTES, read_bounded
from ..io.publish import is_published

_MODEL_ARRAYS = ("weights_", "means_", "precisions_cholesky_")


def predict_fingerprint(model, input_path: str, source_options: dict, output) -> str:
    """SHA-256 of what decides a prediction job's results."""
    digest = hashlib.sha256()
    for name in _MODEL_ARRAYS:
        digest.update(np.ascontiguousarray(getattr(model, name), dtype=np.float64).tobytes())
    options = {k: v for k, v in source_options.items() if k != "storage_options"}
    doc = {"model": [model.n_components, model.covariance_type, digest.hexdigest()],
           "input": input_path, "source": options,
           "output": output.model_dump(mode="json",
                                       exclude={"overwrite", "storage_options",
                                                "checkpoint_dir", "lease_wait"})}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def already_predicted(output, fingerprint: str) -> dict | None:
    """The metrics of ``output`` when this same prediction job published it, else None."""
    import fsspec

    so = output.storage_options
    if output.overwrite or not is_published(output.path, so):
        return None
    fs, path = fsspec.core.url_to_fs(output.path, **so)
    try:
        metrics = json.loads(read_bounded(fs, posixpath.join(path, "metrics.json"),
                                          MAX_METRICS_BYTES))
    except (FileNotFoundError, ValueError):
        return None
    same = (metrics.get("job") or {}).get("fingerprint") == fingerprint
    return metrics if same else None
