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
      weights_init.npy        the constructor's initial arrays, where given
      means_init.npy          (a warm-started job's run sets all three)
      precisions_init.npy

Arrays are read with ``allow_pickle=False``; the round trip is exact. ``model.json``
carries the SHA-256 of every array file (``checksums``) and of its own content
(``sha256``); reading checks them, bounds every read by the size the header implies,
reads array files only by plain names inside the directory (no links, no ``..``), and
checks the parameters' consistency (:mod:`.integrity`). A model written before hashes
existed loads with a warning; any mismatch is :class:`CorruptModel`.
"""

from __future__ import annotations

import io
import json
import posixpath
import warnings
from dataclasses import dataclass

import numpy as np

from ..options import COVARIANCE_TYPES, ESTIMATORS, covariance_shape
from .integrity import (
    HASH_KEY,
    MAX_MODEL_JSON_BYTES,
    CorruptState,
    bytes_hash,
    check_array_file_name,
    check_hash,
    check_history,
    check_params,
    check_precisions,
    content_hash,
    npy_limit,
    read_bounded,
)
from .publish import Publication

FORMAT = "distgmm-model"
SCHEMA_VERSION = 1
MODEL_JSON = "model.json"
ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "precisions")
# constructor parameters that hold arrays: saved as .npy files beside the fitted ones
_ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
# a BayesianGaussianMixture (``kind`` "bayes") adds its posterior's and priors' arrays;
# its scalar priors go in model.json under "bayes"
BAYES_ARRAYS = ("weight_concentration", "mean_precision", "degrees_of_freedom",
                "fitted_mean_prior", "fitted_covariance_prior")
# its constructor's priors given as arrays are saved as .npy too (numbers stay in JSON)
_BAYES_ARRAY_PARAMS = ("mean_prior", "covariance_prior")
_BAYES_SCALARS = ("weight_concentration_prior", "mean_precision_prior",
                  "degrees_of_freedom_prior")


def model_kind(model) -> str:
    """``"bayes"`` for a variational mixture (it has a posterior), else ``"gmm"``."""
    return "bayes" if hasattr(model, "weight_concentration_") else "gmm"


def _bayes_arrays(model) -> dict:
    """The posterior's and priors' arrays of a ``bayes`` model (float64)."""
    if model_kind(model) != "bayes":
        return {}
    k = model.n_components
    out = {"weight_concentration": np.asarray(model.weight_concentration_, np.float64),
           "mean_precision": np.asarray(model.mean_precision_, np.float64),
           "degrees_of_freedom": np.broadcast_to(
               np.asarray(model.degrees_of_freedom_, np.float64), (k,)),
           "fitted_mean_prior": np.asarray(model.mean_prior_, np.float64)}
    if model.covariance_type != "spherical":
        out["fitted_covariance_prior"] = np.asarray(model.covariance_prior_, np.float64)
    return out


def _bayes_doc(model) -> dict | None:
    if model_kind(model) != "bayes":
        return None
    priors = {name: float(getattr(model, name + "_")) for name in _BAYES_SCALARS}
    if model.covariance_type == "spherical":
        priors["covariance_prior"] = float(model.covariance_prior_)
    return {"priors": priors}


def library_versions() -> dict:
    """Versions of distgmm and the libraries its numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    import dask
    import scipy
    import sklearn

    try:
        ours = version("distgmm")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        ours = "0+unknown"
    return {"distgmm": ours, "numpy": np.__version__, "scipy": scipy.__version__,
            "dask": dask.__version__, "scikit-learn": sklearn.__version__}


def _json_params(model) -> dict:
    """Every constructor parameter (``get_params()``) as JSON; the initial arrays are
    null here and saved as ``.npy`` files (:func:`_init_arrays`).

    A ``random_state`` given as a RandomState or Generator object cannot be saved: it
    is stored as null, with a ``UserWarning`` (a loaded model's ``sample`` and refits
    then draw fresh randomness; pass an int to keep them reproducible).
    """
    out = {}
    for key, value in model.get_params(deep=False).items():
        if isinstance(value, np.generic):
            value = value.item()
        if key in _ARRAY_PARAMS or _is_array_param(key, value):
            value = None
        elif key == "random_state" and not (value is None or isinstance(value, int)):
            warnings.warn(
                f"random_state is a {type(value).__name__} object, which a model file "
                "cannot hold: it is saved as null, so the loaded model's sample() and "
                "refits draw fresh randomness. Pass an int random_state to keep them "
                "reproducible.", UserWarning, stacklevel=6)
            value = None
        out[key] = value
    return out


def _is_array_param(key: str, value) -> bool:
    return key in _BAYES_ARRAY_PARAMS and value is not None and np.ndim(value) > 0


def _init_arrays(model) -> dict:
    """The constructor's initial arrays that are set (and array priors), as float64."""
    params = model.get_params(deep=False)
    return {key: np.asarray(params[key], dtype=np.float64) for key in params
            if (key in _ARRAY_PARAMS and params[key] is not None)
            or _is_array_param(key, params[key])}


def _expected_shapes(ct: str, k: int, d: int) -> dict:
    cov = covariance_shape(ct, k, d)
    return {"weights": (k,), "means": (k, d), "covariances": cov,
            "precisions_cholesky": cov, "precisions": cov}


def model_metadata(model, metrics: dict | None = None) -> dict:
    """The JSON document describing a fitted model."""
    names = getattr(model, "feature_names_in_", None)
    k, d = model.means_.shape
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "kind": model_kind(model),
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
        "arrays": {name: f"{name}.npy" for name in (*ARRAYS, *_init_arrays(model),
                                                     *_bayes_arrays(model))},
        "versions": library_versions(),
        "metrics": metrics or {},
        **_outliers_metadata(model),
        **_gridded_metadata(model),
    } | ({"bayes": _bayes_doc(model)} if model_kind(model) == "bayes" else {})


def _gridded_metadata(model) -> dict:
    """``{"gridded_features": ...}`` for a model fitted on xarray input: the feature
    dim, variables and feature coordinates its predict family checks data against."""
    features = getattr(model, "gridded_features_", None)
    return {} if not features else {"gridded_features": features}


def _saved_gridded(meta: dict, path: str, d: int) -> dict | None:
    """The stored gridded features, checked (files of 2-D fits have none)."""
    saved = meta.get("gridded_features")
    if saved is None:
        return None
    ok = (isinstance(saved, dict)
          and set(saved) == {"feature_dim", "variables", "feature_coords", "feature_names"}
          and isinstance(saved["feature_dim"], (str, type(None)))
          and (saved["variables"] is None or (isinstance(saved["variables"], list) and all(
              isinstance(v, str) for v in saved["variables"])))
          and (saved["feature_coords"] is None or isinstance(saved["feature_coords"], list))
          and isinstance(saved["feature_names"], list) and len(saved["feature_names"]) == d
          and all(isinstance(n, str) for n in saved["feature_names"]))
    if not ok:
        raise unreadable(path, "its gridded_features entry is not a feature description "
                               f"of {d} features")
    return dict(saved)


def _outliers_metadata(model) -> dict:
    """``{"outliers": {"fraction", "threshold"}}`` when the model has a threshold."""
    threshold = getattr(model, "outlier_threshold_", None)
    if threshold is None:
        return {}
    return {"outliers": {"fraction": float(model.outlier_fraction_),
                         "threshold": float(threshold), "method": "exact"}}


def write_model_files(model, url: str, metrics: dict | None = None,
                      storage_options: dict | None = None) -> None:
    """Write the model files into the (new or empty) directory ``url``."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.makedirs(path, exist_ok=True)
    meta = model_metadata(model, metrics)
    arrays = ({name: getattr(model, name + "_") for name in ARRAYS} | _init_arrays(model)
              | _bayes_arrays(model))
    meta["checksums"] = {}
    for name, value in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(value, dtype=np.float64), allow_pickle=False)
        fs.pipe_file(posixpath.join(path, meta["arrays"][name]), buf.getvalue())
        meta["checksums"][meta["arrays"][name]] = bytes_hash(buf.getvalue())
    meta[HASH_KEY] = content_hash(meta)
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


def unreadable(path: str, why: str) -> ValueError:
    """The error for a model directory that cannot be loaded, saying why."""
    return ValueError(
        f"{path} is not a readable distgmm model ({why}): point at the model/ directory "
        "written by `distgmm fit` or GaussianMixture.save."
    )


class CorruptModel(ValueError):
    """A model directory that is damaged, edited or inconsistent."""


def corrupt(path: str, what: str) -> CorruptModel:
    """The one-line error for a corrupt model, saying what is wrong."""
    return CorruptModel(f"corrupt model {path}: {what}; refit it or restore the model "
                        "directory from a copy")


def _read_model_json(fs, target: str, path: str) -> dict:
    try:
        meta = json.loads(read_bounded(fs, target, MAX_MODEL_JSON_BYTES))
    except CorruptState as e:
        raise corrupt(path, str(e)) from None
    except ValueError as e:
        raise unreadable(path, f"{MODEL_JSON} is not JSON: {e}") from None
    return meta


def _check_model_hash(meta: dict, path: str) -> None:
    if HASH_KEY not in meta:
        warnings.warn(f"{path} was written without content hashes (by an older distgmm): "
                      "it is checked for consistency but edits cannot be detected; save "
                      "it again to add them.", UserWarning, stacklevel=4)
    elif (problem := check_hash(meta)) is not None:
        raise corrupt(path, f"{MODEL_JSON}: {problem}")


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
        raise unreadable(path, f"no {MODEL_JSON}")
    meta = _read_model_json(fs, target, path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise unreadable(path, f"{MODEL_JSON} does not say format {FORMAT!r}")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has model schema version {version!r}; this distgmm reads up to "
            f"{SCHEMA_VERSION}: upgrade distgmm to load it."
        )
    _check_model_hash(meta, path)
    if meta.get("covariance_type") not in COVARIANCE_TYPES:
        raise unreadable(path, f"unknown covariance_type {meta.get('covariance_type')!r}")
    meta["_root"] = fs.unstrip_protocol(root)
    return meta


@dataclass(frozen=True)
class SavedModel:
    """What a model directory holds, checked; the estimator layer builds the model.

    Attributes
    ----------
    params : dict
        Constructor parameters (``get_params()``), arrays as ndarrays.
    arrays : dict
        ``weights``, ``means``, ``covariances``, ``precisions_cholesky``, ``precisions``.
    fit : dict
        ``converged``, ``n_iter``, ``lower_bound``, ``lower_bounds``.
    n_features : int
    feature_names : list of str or None
    metrics : dict
    outliers : dict or None
        ``fraction`` and ``threshold`` of the outlier flag, if the model has one.
    kind : {"gmm", "bayes"}
        Which estimator wrote it (files without the field are ``"gmm"``).
    bayes : dict or None
        ``{"priors": {...}}``, the scalar priors of a ``bayes`` model (its arrays are
        in ``arrays``).
    gridded : dict or None
        The feature dim, variables, feature coordinates and names of a model fitted on
        xarray input (``gridded_features_``).
    """

    params: dict
    arrays: dict
    fit: dict
    n_features: int
    feature_names: list | None
    metrics: dict
    outliers: dict | None = None
    kind: str = "gmm"
    bayes: dict | None = None
    gridded: dict | None = None


def read_model(path: str, *, storage_options: dict | None = None) -> SavedModel:
    """Read and check a model saved by :func:`save_model` (or a run's ``model/``).

    Parameters
    ----------
    path : str
        The model directory (or a run output directory holding ``model/``).
    storage_options : dict, optional

    Returns
    -------
    SavedModel
    """
    import fsspec

    meta = read_model_metadata(path, storage_options)
    fs, root = fsspec.core.url_to_fs(meta["_root"], **(storage_options or {}))
    try:
        return _saved_from(meta, fs, root, path)
    except CorruptState as e:
        raise corrupt(path, str(e)) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise unreadable(path, f"model.json lacks or garbles {e}") from None


def _load_array(fs, root: str, meta: dict, name: str, path: str,
                shape: tuple | None = None) -> np.ndarray:
    """One array file, read by a plain name inside ``root``, size-bounded by ``shape``
    (the params' initial arrays, of unchecked shape, by the largest fitted one), and
    checked against its stored checksum."""
    rel = meta["arrays"][name]
    if (problem := check_array_file_name(rel)) is not None:
        raise CorruptState(f"{name}: {problem}")
    file = posixpath.join(root, rel)
    if shape is None:
        k, d = int(meta["n_components"]), int(meta["n_features"])
        shape = (k, d, d)
    try:
        data = read_bounded(fs, file, npy_limit(shape), allow_symlink=False)
        checksums = meta.get("checksums")
        if HASH_KEY in meta and (not isinstance(checksums, dict)
                                 or checksums.get(rel) != bytes_hash(data)):
            raise CorruptState(f"{rel} does not match its checksum (edited or damaged)")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        raise unreadable(path, f"{meta['arrays'][name]} is missing") from None
    except CorruptState:
        raise
    except ValueError as e:
        raise unreadable(path, f"{meta['arrays'][name]}: {e}") from None
    if arr.dtype != np.float64:
        raise unreadable(path, f"{name} is {arr.dtype}, expected float64")
    return arr


def _saved_from(meta: dict, fs, root: str, path: str) -> SavedModel:
    k, d, ct = int(meta["n_components"]), int(meta["n_features"]), meta["covariance_type"]
    arrays = {}
    if not (0 < k <= 10**7 and 0 < d <= 10**6):
        raise CorruptState(f"n_components={k}, n_features={d} are not sizes of a model")
    for name, shape in _expected_shapes(ct, k, d).items():
        arrays[name] = _load_array(fs, root, meta, name, path, shape)
        if arrays[name].shape != shape:
            raise unreadable(path, f"{name} has shape {arrays[name].shape}, expected {shape}")
    params = dict(meta["params"])
    for key, header in (("covariance_type", ct), ("n_components", k)):
        if params.setdefault(key, header) != header:  # the arrays were checked by the header
            raise unreadable(path, f"params say {key}={params[key]!r} but the model is {header!r}")
    for key in _ARRAY_PARAMS:  # checked against the parameters by the estimator
        params[key] = (_load_array(fs, root, meta, key, path)
                       if key in meta["arrays"] else None)
    check_params(arrays["weights"], arrays["means"], arrays["precisions_cholesky"], ct,
                 arrays["covariances"], shape=(k, d))
    check_precisions(arrays["precisions"], arrays["precisions_cholesky"], ct)
    tol, max_iter = params.get("tol"), params.get("max_iter")
    fit = check_history(meta["fit"], tol=tol if isinstance(tol, (int, float)) else None,
                        max_iter=max_iter if isinstance(max_iter, int) else None)
    kind = meta.get("kind", "gmm")
    if kind not in ESTIMATORS:
        raise unreadable(path, f"unknown kind {kind!r}, expected one of {ESTIMATORS}")
    bayes = None
    if kind == "bayes":
        arrays |= _read_bayes_arrays(meta, fs, root, path, params)
        bayes = {"priors": {key: float(value)
                            for key, value in meta["bayes"]["priors"].items()}}
    return SavedModel(params, arrays, fit, d, meta.get("feature_names") or None,
                      meta.get("metrics", {}), outliers=_saved_outliers(meta, path),
                      kind=kind, bayes=bayes, gridded=_saved_gridded(meta, path, d))


def _saved_outliers(meta: dict, path: str) -> dict | None:
    """The stored outlier threshold, checked (files written before it have none)."""
    saved = meta.get("outliers")
    if saved is None:
        return None
    fraction, threshold = float(saved["fraction"]), float(saved["threshold"])
    if not (0.0 < fraction < 0.5 and np.isfinite(threshold)):
        raise unreadable(path, f"its outliers entry {saved!r} is out of range")
    return {"fraction": fraction, "threshold": threshold}


def _read_bayes_arrays(meta: dict, fs, root: str, path: str, params: dict) -> dict:
    k, d, ct = int(meta["n_components"]), int(meta["n_features"]), meta["covariance_type"]
    dp = params.get("weight_concentration_prior_type") == "dirichlet_process"
    shapes = {"weight_concentration": (2, k) if dp else (k,), "mean_precision": (k,),
              "degrees_of_freedom": (k,), "fitted_mean_prior": (d,)}
    if ct != "spherical":
        shapes["fitted_covariance_prior"] = (d,) if ct == "diag" else (d, d)
    arrays = {}
    for name, shape in shapes.items():
        arrays[name] = _load_array(fs, root, meta, name, path, shape)
        if arrays[name].shape != shape:
            raise unreadable(path, f"{name} has shape {arrays[name].shape}, expected {shape}")
    for key in _BAYES_ARRAY_PARAMS:  # checked against the parameters by the estimator
        if key in meta["arrays"]:
            params[key] = _load_array(fs, root, meta, key, path)
    return arrays
