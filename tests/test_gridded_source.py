"""Gridded Zarr input (xarray groups, N-D arrays): SourceTests and the stacking's chunks."""

import json
import subprocess
import sys

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from test_sources import SourceTests

from distgmm.io.gridded import stack, unstack
from distgmm.io.sources import GriddedSource, open_source


class TestGriddedDataArrayV3(SourceTests):
    """An xarray-written N-D variable: rows (a, b) stacked, features along ``f``."""

    def make(self, tmp_path, X, chunk_bytes):
        cube = X.reshape(len(X) // 10, 10, X.shape[1])  # a x b x f, C order = X's rows
        ds = xr.Dataset({"v": (("a", "b", "f"), cube)}, coords={"f": ["x", "y", "z"]})
        ds.to_zarr(tmp_path / "g.zarr", zarr_format=3, mode="w",
                   encoding={"v": {"chunks": (10, 10, 3)}})
        return open_source(str(tmp_path / "g.zarr"), variables=["v"], feature_dim="f",
                           chunk_bytes=chunk_bytes)


class TestGriddedVariablesV2(SourceTests):
    """One feature per variable, a consolidated v2 group."""

    def make(self, tmp_path, X, chunk_bytes):
        ds = xr.Dataset({f"v{j}": (("t",), X[:, j]) for j in range(X.shape[1])})
        ds.to_zarr(tmp_path / "g.zarr", zarr_format=2, mode="w", consolidated=True,
                   encoding={f"v{j}": {"chunks": (100,)} for j in range(X.shape[1])})
        return open_source(str(tmp_path / "g.zarr"), variables=["v0", "v1", "v2"],
                           chunk_bytes=chunk_bytes)


class TestNDArrayByAxis(SourceTests):
    """A lone 3-D Zarr array without dimension names; features along axis 0."""

    def make(self, tmp_path, X, chunk_bytes):
        cube = np.ascontiguousarray(X.T.reshape(X.shape[1], len(X) // 20, 20))
        z = zarr.create_array(str(tmp_path / "a.zarr"), shape=cube.shape, dtype=cube.dtype,
                              chunks=(1, 5, 20))
        z[:] = cube
        return open_source(str(tmp_path / "a.zarr"), feature_axis=0, chunk_bytes=chunk_bytes)


def _cube(seed=0, shape=(2, 3, 12, 10)):
    rng = np.random.default_rng(seed)
    t, d, y, x = shape
    temp = rng.normal(10, 3, shape)
    salt = rng.normal(35, 1, shape)
    return xr.Dataset(
        {"temp": (("time", "depth", "y", "x"), temp), "salt": (("time", "depth", "y", "x"), salt)},
        coords={"time": np.arange(t), "depth": [5.0, 50.0, 500.0][:d],
                "y": np.linspace(-10, 10, y), "x": np.linspace(0, 30, x)},
        attrs={"title": "synthetic"})


@pytest.mark.parametrize("fmt", [2, 3])
def test_row_chunks_are_whole_source_blocks(tmp_path, fmt):
    ds = _cube()
    ds.to_zarr(tmp_path / "c.zarr", zarr_format=fmt, mode="w",
               encoding={v: {"chunks": (1, 2, 5, 4)} for v in ("temp", "salt")})
    src = GriddedSource(str(tmp_path / "c.zarr"), ("temp", "salt"), "depth",
                        chunk_bytes=1)  # one block per row chunk
    data = src.load()
    X = data.X.compute()
    # the oracle: every source block (time, y, x blocks; all depths) in C order of the
    # block grid, each block's profiles in C order, temp's depths then salt's
    expected = []
    for t in range(2):
        for y0 in range(0, 12, 5):
            for x0 in range(0, 10, 4):
                block = ds.isel(time=slice(t, t + 1), y=slice(y0, y0 + 5), x=slice(x0, x0 + 4))
                expected.append(np.concatenate(
                    [block[v].transpose("time", "y", "x", "depth").values.reshape(-1, 3)
                     for v in ("temp", "salt")], axis=1))
    assert data.X.chunks[0] == tuple(len(e) for e in expected)
    np.testing.assert_array_equal(X, np.concatenate(expected))
    assert data.feature_names == ("temp_5.0", "temp_50.0", "temp_500.0",
                                  "salt_5.0", "salt_50.0", "salt_500.0")
    grid = data.grid
    assert grid.sample_dims == ("time", "y", "x")
    assert grid.sample_chunks == ((1, 1), (5, 5, 2), (4, 4, 2))
    back = unstack(data.X[:, 4], grid)
    assert back.chunks == grid.sample_chunks
    np.testing.assert_array_equal(back.compute(), ds["salt"].isel(depth=1).values)
    json.dumps(data.description)


def test_small_store_chunks_are_read_together(tmp_path):
    ds = _cube(shape=(4, 3, 40, 40))
    ds.to_zarr(tmp_path / "c.zarr", mode="w",
               encoding={v: {"chunks": (1, 3, 4, 4)} for v in ("temp", "salt")})  # 400 chunks
    data = GriddedSource(str(tmp_path / "c.zarr"), ("temp", "salt"), "depth",
                         chunk_bytes=800 * 6 * 8).load()  # 800 rows per chunk
    # whole store chunks merged, innermost dim first: (1, 4, 4) -> (1, 20, 40) = 800 rows
    assert data.grid.sample_chunks == ((1,) * 4, (20, 20), (40,))
    assert data.grid.block_rows == (800,) * 8 and data.X.chunks[0] == (800,) * 8
    # a handful of tasks per read chunk, not per store chunk
    assert len(data.X.__dask_graph__()) < 12 * 8
    np.testing.assert_array_equal(
        unstack(data.X[:, 0], data.grid).compute(), ds["temp"].isel(depth=0).values)
    hand = np.concatenate([ds[v].transpose("time", "y", "x", "depth").values.reshape(-1, 3)
                           for v in ("temp", "salt")], axis=1)
    assert sorted(map(tuple, data.X.compute())) == sorted(map(tuple, hand))


def test_user_chunks_are_merged_into_row_chunks():
    ds = _cube(shape=(4, 3, 40, 40)).chunk({"time": 1, "y": 4, "x": 4})  # 400 blocks
    X, grid = stack(ds, "depth", ["temp", "salt"], chunk_bytes=800 * 6 * 8)
    assert len(grid.block_rows) == 400 and set(grid.block_rows) == {16}
    assert X.chunks[0] == (800,) * 8
    assert set(np.cumsum(X.chunks[0])) <= set(np.cumsum(grid.block_rows))
    # the threaded scheduler, as when this file runs alone: in the full suite an earlier
    # test's Client is the default and ran these ~4,000 tiny tasks on the cluster (~9 s)
    with dask.config.set(scheduler="threads"):
        back = unstack(X[:, 3], grid).compute()
    np.testing.assert_array_equal(back, ds["salt"].isel(depth=0).values)


def test_feature_dim_in_several_chunks_is_joined(tmp_path):
    ds = _cube()
    ds.to_zarr(tmp_path / "c.zarr", mode="w",
               encoding={v: {"chunks": (1, 1, 6, 10)} for v in ("temp", "salt")})
    data = GriddedSource(str(tmp_path / "c.zarr"), ("temp",), "depth").load()
    assert data.X.numblocks[1] == 1
    hand = ds["temp"].transpose("time", "y", "x", "depth").values.reshape(-1, 3)
    X = data.X.compute()
    assert sorted(map(tuple, X)) == sorted(map(tuple, hand))


def test_fill_values_become_nan(tmp_path):
    ds = _cube()
    ds["temp"][:, :, :2, :] = np.nan  # xarray writes _FillValue and masks on reading
    ds.to_zarr(tmp_path / "c.zarr", mode="w", encoding={"temp": {"_FillValue": -999.0}})
    raw = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")["temp"][:]
    assert (raw == -999.0).any()
    X = GriddedSource(str(tmp_path / "c.zarr"), ("temp",), "depth").load().X.compute()
    assert np.isnan(X).any(axis=1).sum() == 2 * 2 * 10


def test_ndarray_dimension_names_from_metadata(tmp_path):
    cube = np.arange(4 * 6 * 3, dtype=np.float64).reshape(4, 6, 3)
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=cube.shape, dtype=cube.dtype,
                          chunks=(2, 3, 3), dimension_names=("y", "x", "band"))
    z[:] = cube
    data = open_source(str(tmp_path / "a.zarr"), feature_dim="band").load()
    assert data.grid.sample_dims == ("y", "x")
    np.testing.assert_array_equal(unstack(data.X, data.grid).compute(), cube)


def _bad_group(tmp_path):
    ds = _cube()
    ds["mask"] = (("y", "x"), np.ones((12, 10)))
    ds["name"] = (("y", "x"), np.full((12, 10), "land"))
    ds.to_zarr(tmp_path / "c.zarr", mode="w")
    return str(tmp_path / "c.zarr")


@pytest.mark.parametrize("options, message", [
    ({"variables": ("temp", "salinity")}, r"No variable\(s\) \['salinity'\].*holds"),
    ({"variables": ("temp",), "feature_dim": "level"}, r"No dimension 'level'.*'depth'"),
    ({"variables": ("temp", "mask"), "feature_dim": "depth"}, "have different dimensions"),
    ({"variables": ("mask", "name")}, "'name' has dtype <U4, which is not a real number"),
    ({"feature_dim": "depth"}, r"holding variables \['mask', 'name', 'salt', 'temp'\]"),
    ({"variables": ("temp",), "feature_axis": 1}, "--feature-axis applies to a lone array"),
])
def test_bad_gridded_input(tmp_path, options, message):
    path = _bad_group(tmp_path)
    with pytest.raises(ValueError, match=message):
        open_source(path, **options).load()


def test_a_lone_nd_array_needs_a_feature_dim(tmp_path):
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 5, 2), dtype="f8", chunks=(2, 5, 2))
    with pytest.raises(ValueError, match="is out of range"):
        open_source(str(tmp_path / "a.zarr"), feature_axis=3).load()
    with pytest.raises(ValueError, match="No dimension 'band'.*dim_0"):
        open_source(str(tmp_path / "a.zarr"), feature_dim="band").load()


def test_stack_of_in_memory_data_is_c_order():
    ds = _cube()
    X, grid = stack(ds, "depth", ["temp", "salt"])
    hand = np.concatenate([ds[v].transpose("time", "y", "x", "depth").values.reshape(-1, 3)
                           for v in ("temp", "salt")], axis=1)
    np.testing.assert_array_equal(X.compute(), hand)


def test_import_distgmm_does_not_import_xarray():
    code = ("import sys, distgmm; from distgmm import GaussianMixture; "
            "import distgmm.io.sources; print('xarray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
