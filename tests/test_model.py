"""Model files: exact round trip, no pickle, clear errors, scikit-learn export."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import blobs

from distgmm import GaussianMixture, load_model
from distgmm.io.model import SCHEMA_VERSION


@pytest.fixture(scope="module")
def data():
    return blobs(n=600, d=3, k=3, seed=2)[0]


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_round_trip_is_exact(tmp_path, data, ct):
    gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(data)
    gm.save(str(tmp_path / "m"), metrics={"note": "x"})
    back = load_model(str(tmp_path / "m"))
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(gm, attr))
    assert back.lower_bounds_ == gm.lower_bounds_
    assert (back.n_iter_, back.converged_, back.lower_bound_) == (
        gm.n_iter_, gm.converged_, gm.lower_bound_)
    assert back.get_params() == gm.get_params()
    assert back.metrics_ == {"note": "x"}
    np.testing.assert_array_equal(back.predict_proba(data), gm.predict_proba(data))


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_to_sklearn_predicts_the_same(data, ct):
    gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(data)
    sk = gm.to_sklearn()
    np.testing.assert_allclose(sk.score_samples(data), gm.score_samples(data), rtol=1e-12)
    np.testing.assert_array_equal(sk.predict(data), gm.predict(data))


def test_feature_names_survive(tmp_path, data):
    df = pd.DataFrame(data, columns=["a", "b", "c"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    gm.save(str(tmp_path / "m"))
    back = load_model(str(tmp_path / "m"))
    assert list(back.feature_names_in_) == ["a", "b", "c"]
    assert json.loads((tmp_path / "m" / "model.json").read_text())["feature_names"] == [
        "a", "b", "c"]


def test_no_pickle_and_clear_errors(tmp_path, data):
    gm = GaussianMixture(2, random_state=0).fit(data)
    path = tmp_path / "m"
    gm.save(str(path))
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        gm.save(str(path))
    gm.save(str(path), overwrite=True)
    np.save(path / "means.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="corrupt model .*means.npy does not match its checksum"):
        load_model(str(path))
    gm.save(str(path), overwrite=True)
    meta = json.loads((path / "model.json").read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="upgrade distgmm"):
        load_model(str(path))
    gm.save(str(path), overwrite=True)
    os.remove(path / "weights.npy")
    with pytest.raises(ValueError, match="weights.npy is missing"):
        load_model(str(path))
    gm.save(str(path), overwrite=True)
    meta = json.loads((path / "model.json").read_text())
    del meta["fit"]
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="corrupt model .*content hash does not match"):
        load_model(str(path))
    with pytest.raises(FileNotFoundError, match="No model at"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model.json"):
        load_model(str(tmp_path / "empty"))


def test_failed_save_leaves_nothing(tmp_path, data, monkeypatch):
    import distgmm.io.model as model

    gm = GaussianMixture(2, random_state=0).fit(data)
    calls = []

    def failing_save(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return np.lib.format.write_array(a[0], a[1], allow_pickle=False)

    monkeypatch.setattr(model.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        gm.save(str(tmp_path / "m"))
    assert os.listdir(tmp_path) == []


def test_save_to_fsspec_memory(data):
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(data)
    gm.save("memory://models/m1")
    back = load_model("memory://models/m1")
    np.testing.assert_array_equal(back.means_, gm.means_)


def _assert_same_params(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[key], np.ndarray) and got[key].dtype == np.float64, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            assert got[key] == value and type(got[key]) is type(value), key


def test_every_constructor_parameter_round_trips(tmp_path, data, capsys):
    k, d = 3, data.shape[1]
    rng = np.random.default_rng(4)
    params = dict(
        n_components=k, covariance_type="diag", tol=1e-4, reg_covar=1e-5, max_iter=50,
        n_init=2, init_params="random", weights_init=np.array([0.2, 0.3, 0.5]),
        means_init=data[rng.choice(len(data), k, replace=False)],
        precisions_init=np.full((k, d), 0.5), random_state=7, warm_start=True, verbose=1,
        verbose_interval=3, cache="none", compute_dtype="float32", missing="omit",
    )
    defaults = GaussianMixture().get_params()
    assert params.keys() == defaults.keys(), "a new constructor parameter: set it here"
    for key, value in params.items():
        assert value is not defaults[key] and (
            isinstance(value, np.ndarray) or value != defaults[key]), key
    gm = GaussianMixture(**params).fit(data)
    capsys.readouterr()  # verbose output
    back = load_model(gm.save(str(tmp_path / "m")))
    _assert_same_params(back.get_params(), gm.get_params())
    _assert_same_params(back.get_params(), params)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["params"]["compute_dtype"] == "float32"
    # initial arrays are .npy files beside the fitted ones, not numbers in the JSON
    assert meta["params"]["means_init"] is None
    assert meta["arrays"]["means_init"] == "means_init.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "means_init.npy"),
                                  params["means_init"])


def _edit_params(root, **changes):
    """Edit model.json and re-hash it: a deliberate edit, caught by the checks after
    the hash."""
    from distgmm.io.integrity import content_hash

    meta = json.loads((root / "model.json").read_text())
    meta["params"].update(changes)
    meta["sha256"] = content_hash(meta)
    (root / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, why", [
    ({"covariance_type": "tied"}, "params say covariance_type='tied' but the model is 'diag'"),
    ({"n_components": 5}, "params say n_components=5 but the model is 3"),
    ({"compute_dtype": "float16"}, "compute_dtype"),
    ({"n_components": "3"}, "n_components"),
    ({"cache": 7}, "cache"),
])
def test_tampered_parameters_are_refused(tmp_path, data, changes, why):
    GaussianMixture(3, covariance_type="diag", random_state=0).fit(data).save(
        str(tmp_path / "m"))
    _edit_params(tmp_path / "m", **changes)
    with pytest.raises(ValueError, match="is not a readable distgmm model") as err:
        load_model(str(tmp_path / "m"))
    assert why in str(err.value)


def test_initial_arrays_of_the_wrong_shape_are_refused(tmp_path, data):
    import hashlib

    from distgmm.io.integrity import content_hash

    GaussianMixture(3, random_state=0, means_init=data[:3]).fit(data).save(str(tmp_path / "m"))
    np.save(tmp_path / "m" / "means_init.npy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="corrupt model .*means_init.npy does not match"):
        load_model(str(tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "model.json").read_text())  # checksum re-made too
    meta["checksums"]["means_init.npy"] = hashlib.sha256(
        (tmp_path / "m" / "means_init.npy").read_bytes()).hexdigest()
    meta["sha256"] = content_hash(meta)
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not a readable distgmm model .*means"):
        load_model(str(tmp_path / "m"))


def test_a_random_state_object_is_saved_as_null_with_a_warning(tmp_path, data):
    gm = GaussianMixture(2, random_state=np.random.RandomState(3)).fit(data)
    with pytest.warns(UserWarning, match="random_state is a RandomState object.*saved as "
                                         "null.*Pass an int random_state"):
        gm.save(str(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "model.json").read_text())["params"][
        "random_state"] is None
    back = load_model(str(tmp_path / "m"))
    assert back.random_state is None
    expected = {**gm.get_params(), "random_state": None}
    _assert_same_params(back.get_params(), expected)
    np.testing.assert_array_equal(back.predict_proba(data), gm.predict_proba(data))


def test_a_model_saved_before_compute_dtype_existed_loads(tmp_path, data):
    """Schema 1 files from before compute_dtype (and cache) were constructor parameters:
    the missing parameters take their defaults."""
    gm = GaussianMixture(2, covariance_type="tied", random_state=0).fit(data)
    path = tmp_path / "m"
    gm.save(str(path))
    meta = json.loads((path / "model.json").read_text())
    assert meta["schema_version"] == 1
    for key in ("compute_dtype", "cache", "sha256", "checksums"):
        (meta["params"] if key in meta["params"] else meta).pop(key)
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="without content hashes"):
        back = load_model(str(path))
    assert back.compute_dtype == "float64" and back.cache == "auto"
    assert back.get_params() == gm.get_params()
    np.testing.assert_array_equal(back.predict_proba(data), gm.predict_proba(data))
