"""The estimator on xarray DataArrays and Datasets: lazy in, lazy maps out."""

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from conftest import sklearn_start

from distgmm import GaussianMixture


def _ocean(seed=0, shape=(3, 4, 10, 12), land=True):
    """temp and salt profiles of two water masses, land NaN on every level."""
    rng = np.random.default_rng(seed)
    t, d, y, x = shape
    mass = (np.arange(x)[None, None, :] > x // 2) & np.ones((t, y, 1), bool)
    profile = np.linspace(1, 0, d)
    temp = np.where(mass[:, None], 20 * profile[:, None, None], 8 + 4 * profile[:, None, None])
    salt = np.where(mass[:, None], 34 + profile[:, None, None], 36 - profile[:, None, None])
    temp = temp + rng.normal(0, 0.5, shape)
    salt = salt + rng.normal(0, 0.1, shape)
    if land:
        is_land = np.zeros((y, x), bool)
        is_land[:3, :4] = True
        is_land[-1, -2:] = True
        temp[:, :, is_land] = np.nan
        salt[:, :, is_land] = np.nan
    return xr.Dataset(
        {"temp": (("time", "depth", "y", "x"), temp, {"units": "degC"}),
         "salt": (("time", "depth", "y", "x"), salt)},
        coords={"time": np.arange(t), "depth": np.linspace(0, 300, d),
                "y": np.arange(y) * 0.5, "x": np.arange(x) * 0.25,
                "lat": (("y", "x"), np.add.outer(np.arange(y), np.zeros(x)))},
        attrs={"title": "synthetic ocean"})


def _hand_rows(ds, variables=("temp", "salt")):
    """The 2-D array of profiles built by hand, and the mask of complete ones."""
    X = np.concatenate([ds[v].transpose("time", "y", "x", "depth").values.reshape(
        -1, ds.sizes["depth"]) for v in variables], axis=1)
    keep = ~np.isnan(X).any(axis=1)
    return X, keep


@pytest.fixture
def threaded():
    """The threaded scheduler, as when this file runs alone: in the full suite an earlier
    test's Client is dask's default, and these small graphs (27 chunks a variable) ran on
    the cluster instead (~2 s a test). The cluster case is
    test_dask_dataarray_is_never_computed_on_the_driver."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("form", ["dataset", "dataarray"])
@pytest.mark.usefixtures("threaded")
def test_dataset_and_dataarray_equal_the_hand_built_fit(form):
    ds = _ocean().chunk({"time": 1, "y": 4, "x": 5})
    if form == "dataset":
        data, variables, kw = ds, ("temp", "salt"), {"feature_dim": "depth"}
    else:
        data, variables, kw = ds["temp"].transpose("time", "y", "x", "depth"), ("temp",), {}
    X, keep = _hand_rows(ds, variables)
    start = sklearn_start(X[keep], 2, "full")
    params = dict(tol=0, max_iter=6, missing="omit", **start)
    ref = GaussianMixture(2, **params).fit(X[keep])
    gm = GaussianMixture(2, **params).fit(data, **kw)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-10)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-10, atol=1e-12)
    assert gm.n_omitted_ == (~keep).sum()
    labels = gm.predict(data)
    assert isinstance(labels, xr.DataArray) and isinstance(labels.data, da.Array)
    assert labels.dims == ("time", "y", "x")
    for c in ("time", "y", "x", "lat"):
        xr.testing.assert_equal(labels[c], ds[c])
    hand = np.full(len(X), -1)
    hand[keep] = ref.predict(X[keep])
    np.testing.assert_array_equal(labels.values, hand.reshape(labels.shape))
    proba = gm.predict_proba(data)
    assert proba.dims == ("time", "y", "x", "component")
    want = np.full((len(X), 2), np.nan)
    want[keep] = ref.predict_proba(X[keep])
    np.testing.assert_allclose(proba.values, want.reshape(proba.shape), rtol=1e-10,
                               atol=1e-14)
    ll = gm.score_samples(data)
    want = np.full(len(X), np.nan)
    want[keep] = ref.score_samples(X[keep])
    np.testing.assert_allclose(ll.values, want.reshape(ll.shape), rtol=1e-10)
    assert gm.score(data) == pytest.approx(ref.score(X[keep]), rel=1e-10)
    np.testing.assert_array_equal(gm.fit_predict(data, **kw).values, labels.values)


def test_in_memory_dataarray_default_feature_dim_is_the_last():
    ds = _ocean(land=False)
    arr = ds["salt"].transpose("time", "y", "x", "depth")
    gm = GaussianMixture(2, random_state=0).fit(arr)
    assert gm.gridded_features_["feature_dim"] == "depth"
    assert gm.gridded_features_["feature_coords"] == ds["depth"].values.tolist()
    X, _ = _hand_rows(ds, ("salt",))
    np.testing.assert_array_equal(gm.predict(arr).values.ravel(), gm.predict(X))


@pytest.mark.parametrize("change, message", [
    (lambda ds: ds.assign_coords(depth=ds.depth + 1), "coordinates along 'depth'"),
    (lambda ds: ds.rename(salt="sal"), r"No variable\(s\) \['salt'\]"),
    (lambda ds: ds.isel(depth=slice(0, 3)), "coordinates along 'depth'"),
])
def test_feature_mismatch_is_refused(change, message):
    ds = _ocean(land=False)
    gm = GaussianMixture(2, random_state=0, max_iter=5).fit(ds, feature_dim="depth")
    assert gm.gridded_features_["variables"] == ["temp", "salt"]
    with pytest.raises(ValueError, match=message):
        gm.predict(change(ds))


def test_predict_takes_the_fitted_variables_in_their_order():
    ds = _ocean(land=False)
    gm = GaussianMixture(2, random_state=0, max_iter=5).fit(ds, feature_dim="depth")
    other = ds[["salt", "temp"]].assign(extra=ds.temp * 2)
    np.testing.assert_array_equal(gm.predict(other).values, gm.predict(ds).values)


def test_predict_is_lazy():
    ds = _ocean(land=False).chunk({"time": 1})
    gm = GaussianMixture(2, random_state=0, max_iter=5).fit(ds, feature_dim="depth")

    def boom(block):
        raise AssertionError("computed")

    poisoned = ds.copy()
    poisoned["temp"] = ds["temp"].copy(data=ds["temp"].data.map_blocks(boom, dtype=float))
    for method in (gm.predict, gm.predict_proba, gm.score_samples):
        out = method(poisoned)  # builds the graph only
        assert isinstance(out.data, da.Array)


def _worker_only(block):
    from distributed import get_worker

    get_worker()  # raises ValueError on the driver
    return block


def test_dask_dataarray_is_never_computed_on_the_driver(client):
    ds = _ocean().chunk({"time": 1, "y": 5})
    arr = ds["temp"].copy(data=ds["temp"].data.map_blocks(_worker_only, dtype=float))
    with pytest.raises(ValueError), dask.config.set(scheduler="sync"):
        arr.isel(time=0, depth=0, y=5, x=5).compute()  # the oracle: here it fails
    gm = GaussianMixture(2, random_state=0, max_iter=5, missing="omit", cache="none")
    gm.fit(arr, feature_dim="depth")
    labels = gm.predict(arr, feature_dim="depth")
    got = client.compute(labels.data).result()
    assert (got == -1).sum() == ds.sizes["time"] * 14


def test_sample_weight_with_xarray_is_refused():
    with pytest.raises(ValueError, match="sample_weight is not taken with xarray input"):
        GaussianMixture(2).fit(_ocean(land=False), sample_weight=np.ones(3),
                               feature_dim="depth")


def test_a_saved_model_remembers_its_gridded_features(tmp_path):
    """Saved and loaded, the model still takes the variables by name and refuses other
    feature coordinates; a tampered entry is a corrupt model."""
    import json

    from distgmm import load_model

    ds = _ocean(land=False)
    gm = GaussianMixture(2, random_state=0, max_iter=5).fit(ds, feature_dim="depth")
    gm.save(str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.gridded_features_ == gm.gridded_features_
    other = ds[["salt", "temp"]]  # another order: taken by name
    np.testing.assert_array_equal(loaded.predict(other).values, gm.predict(ds).values)
    assert loaded.predict(ds).dims == gm.predict(ds).dims
    with pytest.raises(ValueError, match="coordinates along 'depth'"):
        loaded.predict(ds.assign_coords(depth=ds.depth + 1))
    from distgmm.io.integrity import content_hash

    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["gridded_features"]["feature_names"] = ["x"]  # re-hashed: past the hash check
    meta["sha256"] = content_hash(meta)
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="gridded_features"):
        load_model(str(tmp_path / "m"))
