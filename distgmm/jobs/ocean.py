"""The synthetic ocean cube that ``jobs/gridded-ocean.yaml`` clusters.

    python -m distgmm.jobs.ocean distgmm-demo/ocean.zarr      # then
    distgmm run jobs/gridded-ocean.yaml

A (time, depth, y, x) cube of temperature and salinity written by xarray (Zarr v3,
chunked along time and space like model output): three water masses (warm and salty
in the south-east, cold and fresh in the north, mixed in between) plus noise, and a
land mask (NaN on every level over land), so the job uses ``missing: omit``.
"""

from __future__ import annotations

import sys

import numpy as np


def ocean_cube(n_time: int = 4, n_depth: int = 12, ny: int = 60, nx: int = 80,
               seed: int = 0):
    """The cube as an in-memory ``xarray.Dataset`` (temp, salt; land NaN)."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    depth = np.linspace(0, 1000, n_depth)
    lat = np.linspace(-30, 30, ny)
    lon = np.linspace(0, 60, nx)
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    mass = np.where(yy > 10, 0, np.where(xx > 30, 2, 1))  # north / west / south-east
    surface_t, deep_t = np.array([6.0, 14.0, 24.0]), np.array([2.0, 4.0, 6.0])
    surface_s, deep_s = np.array([33.5, 35.0, 36.5]), np.array([34.6, 34.8, 35.2])
    decay = np.exp(-depth / 250.0)[:, None, None]
    temp = deep_t[mass] + (surface_t - deep_t)[mass] * decay
    salt = deep_s[mass] + (surface_s - deep_s)[mass] * decay
    shape = (n_time, n_depth, ny, nx)
    temp = temp[None] + rng.normal(0, 0.3, shape)
    salt = salt[None] + rng.normal(0, 0.05, shape)
    land = (xx - 45) ** 2 / 80 + (yy + 15) ** 2 / 60 < 1.0  # an island
    land |= xx < 4  # a coast
    temp[:, :, land] = np.nan
    salt[:, :, land] = np.nan
    dims = ("time", "depth", "lat", "lon")
    return xr.Dataset(
        {"temp": (dims, temp, {"long_name": "sea water temperature", "units": "degC"}),
         "salt": (dims, salt, {"long_name": "sea water salinity", "units": "1e-3"})},
        coords={"time": np.arange(n_time), "depth": ("depth", depth, {"units": "m"}),
                "lat": lat, "lon": lon},
        attrs={"title": "synthetic ocean cube (distgmm example)"})


def write_ocean_cube(path: str) -> None:
    """Write :func:`ocean_cube` to ``path`` (Zarr v3, chunked along time and space)."""
    ds = ocean_cube()
    # xarray consolidates the metadata by default (zarr warns it is not in the v3 spec)
    ds.chunk({"time": 1, "depth": -1, "lat": 20, "lon": 20}).to_zarr(
        path, mode="w", zarr_format=3, consolidated=False)
    print(f"wrote {path}: {dict(ds.sizes)}")


if __name__ == "__main__":
    write_ocean_cube(sys.argv[1] if len(sys.argv) > 1 else "distgmm-demo/ocean.zarr")
