"""Model files: ``model.json`` plus one ``.npy`` per array. Never pickle.

A model directory::

    model/
      model.json              schema version, parameters, covariance type, feature
                              names, dtype, library versions, fit summary, metrics
      weights.npy             (n_components,)
      means.npy               (n_components, n_features)
      covariances.npy         shaped by covariance type
      precisions_cholesky.npy
      precisions.npy

Arrays are read with ``allow_pickle=False``; the round trip is exact.
"""

from __future__ import annotations

import io
import json
import posixpath

import numpy as np

from .numerics.gaussian import COVARIANCE_TYPES
from .publish import Publication

FORMAT = "distgmm-model"
SCHEMA_VERSION = 1
MODEL_JSON = "model.json"
ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "precisions")
_SCALAR_PARAMS = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                  "init_params", "random_state", "warm_start", "verbose", "verbose_interval",
                  "cache")


def library_versions() -> dict:
    """Versions of distgmm and the libraries its numbers depend on."""
    import dask
    import scipy
    import sklearn

    from . import __version__

    return {"distgmm": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "dask": dask.__version__, "scikit-learn": sklearn.__version__}


def _json_params(model) -> dict:
    params = model.get_params(deep=False)
    out = {k: params[k] for k in _SCALAR_PARAMS if k in params}
    rs = out.get("random_state")
    if not (rs is None or isinstance(rs, (int, np.integer))):
        out["random_state"] = None
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}


def _expected_shapes(ct: str, k: int, d: int) -> dict:
    cov = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[ct]
    return {"weights": (k,), "means": (k, d), "covariances": cov,
            "precisions_cholesky": cov, "precisions": cov}


def model_metadata(model, metrics: dict | None = None) -> dict:
    """The JSON document describing a fitted model."""
    names = getattr(model, "feature_names_in_", None)
    k, d = model.means_.shape
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "covariance_type": model.covariance_type,
        "n_components": int(k),
        "n_features": int(d),
        "feature_names": None if names is None else [str(n) for n in names],
        "dtype": "float64",
        "params": _json_params(model),
        "fit": {
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "lower_bound": float(model.lower_bound_),
            "lower_bounds": [float(v) for v in getattr(model, "lower_bounds_", [])],
        },
        "arrays": {name: f"{name}.npy" for name in ARRAYS},
        "versions": library_versions(),
        "metrics": metrics or {},
    }


def write_model_files(model, url: str, metrics: dict | None = None,
                      storage_options: dict | None = None) -> None:
    """Write the model files into the (new or empty) directory ``url``."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.makedirs(path, exist_ok=True)
    meta = model_metadata(model, metrics)
    for name in ARRAYS:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(getattr(model, name + "_"), dtype=np.float64),
                allow_pickle=False)
        fs.pipe_file(posixpath.join(path, meta["arrays"][name]), buf.getvalue())
    fs.pipe_file(posixpath.join(path, MODEL_JSON),
                 json.dumps(meta, indent=2, allow_nan=True).encode())


def save_model(model, path: str, *, metrics: dict | None = None, overwrite: bool = False,
               storage_options: dict | None = None) -> str:
    """Save a fitted :class:`~distgmm.GaussianMixture` to the directory ``path``.

    Written to a staging directory and moved into place, so ``path`` either holds a
    complete model or nothing.

    Parameters
    ----------
    model : GaussianMixture
        Fitted.
    path : str
        Local directory or fsspec URL; must not exist unless ``overwrite``.
    metrics : dict, optional
        Stored under ``"metrics"`` in ``model.json``.
    overwrite : bool, default=False
    storage_options : dict, optional

    Returns
    -------
    str
        ``path``.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "precisions_cholesky_")
    with Publication(path, overwrite=overwrite, marker=False,
                     storage_options=storage_options) as pub:
        write_model_files(model, pub.staging_url, metrics, storage_options)
    return path


def _bad(path: str, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable distgmm model ({why}): point at the model/ directory "
        "written by `distgmm fit` or GaussianMixture.save."
    )


def read_model_metadata(path: str, storage_options: dict | None = None) -> dict:
    """``model.json`` of the model at ``path``, checked for format and schema version."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    target = posixpath.join(root, MODEL_JSON)
    if not fs.exists(target):
        if not fs.exists(root):
            raise FileNotFoundError(f"No model at {path}: check the path.")
        if fs.exists(posixpath.join(root, "model", MODEL_JSON)):
            return read_model_metadata(posixpath.join(path, "model"), storage_options)
        raise _bad(path, f"no {MODEL_JSON}")
    try:
        meta = json.loads(fs.cat_file(target))
    except ValueError as e:
        raise _bad(path, f"{MODEL_JSON} is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, f"{MODEL_JSON} does not say format {FORMAT!r}")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has model schema version {version!r}; this distgmm reads up to "
            f"{SCHEMA_VERSION}: upgrade distgmm to load it."
        )
    if meta.get("covariance_type") not in COVARIANCE_TYPES:
        raise _bad(path, f"unknown covariance_type {meta.get('covariance_type')!r}")
    meta["_root"] = fs.unstrip_protocol(root)
    return meta


def load_model(path: str, *, storage_options: dict | None = None):
    """Load a model saved by :func:`save_model` (or a run's ``model/`` directory).

    Parameters
    ----------
    path : str
        The model directory (or a run output directory holding ``model/``).
    storage_options : dict, optional

    Returns
    -------
    GaussianMixture
        Fitted, with the saved parameters and fit summary; ``metrics_`` holds the
        stored metrics.
    """
    import fsspec

    meta = read_model_metadata(path, storage_options)
    fs, root = fsspec.core.url_to_fs(meta["_root"], **(storage_options or {}))
    try:
        return _model_from(meta, fs, root, path)
    except (KeyError, TypeError, AttributeError) as e:
        raise _bad(path, f"model.json lacks or garbles {e}") from None


def _model_from(meta: dict, fs, root: str, path: str):
    from .estimator import GaussianMixture

    k, d, ct = int(meta["n_components"]), int(meta["n_features"]), meta["covariance_type"]
    arrays = {}
    for name, shape in _expected_shapes(ct, k, d).items():
        file = posixpath.join(root, meta["arrays"][name])
        try:
            arr = np.load(io.BytesIO(fs.cat_file(file)), allow_pickle=False)
        except FileNotFoundError:
            raise _bad(path, f"{meta['arrays'][name]} is missing") from None
        except ValueError as e:
            raise _bad(path, f"{meta['arrays'][name]}: {e}") from None
        if arr.shape != shape or arr.dtype != np.float64:
            raise _bad(path, f"{name} has shape {arr.shape} {arr.dtype}, expected {shape} "
                       "float64")
        arrays[name] = arr
    params = {k_: v for k_, v in meta["params"].items() if k_ in _SCALAR_PARAMS}
    model = GaussianMixture(**params)
    for name, arr in arrays.items():
        setattr(model, name + "_", arr)
    fit = meta["fit"]
    model.converged_ = bool(fit["converged"])
    model.n_iter_ = int(fit["n_iter"])
    model.lower_bound_ = float(fit["lower_bound"])
    model.lower_bounds_ = [float(v) for v in fit["lower_bounds"]]
    model.n_features_in_ = d
    if meta.get("feature_names"):
        model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    model.metrics_ = meta.get("metrics", {})
    return model
