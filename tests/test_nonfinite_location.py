"""The NaN error tells the truth on every kind of input: how many non-finite values,
in how many rows of the whole input, the first row, and the column by its name.

The expected numbers come from numpy on the same data (the oracle); before, dask and
Zarr input reported the first failing block only ("252 values in 42 rows between rows
875000 and 879095, first at row 875037" for 10,310 rows from row 0).
"""

import re

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import blobs, invoke_main

from distgmm import GaussianMixture, select_model
from distgmm.numerics.finite import NonFiniteError


@pytest.fixture(scope="module")
def X():
    X = blobs(n=20_000, d=3, k=3, seed=5)[0]
    X[::97, 1] = np.nan
    X[5003, 2] = np.inf  # a second column, and a row with two bad values below
    X[5044, 0] = -np.inf
    X[5044, 2] = np.nan
    return X


def expected(X, names=None, whole=False):
    """The message, from numpy; ``whole``: numpy input, checked whole before the fit,
    also says the rows looked at (all of them)."""
    bad = ~np.isfinite(X)
    rows = np.flatnonzero(bad.any(axis=1))
    col = int(np.argmax(bad[rows[0]]))
    name = f" \\({names[col]!r}\\)" if names else ""
    span = f" between rows 0 and {len(X) - 1}" if whole else ""
    return (rf"Input contains NaN or infinity: {int(bad.sum())} non-finite value\(s\) in "
            rf"{len(rows)} row\(s\){span}, first at row {rows[0]}, column {col}{name}\. "
            r"Drop or impute those rows")


def test_expected_is_not_trivial(X):
    assert re.search(r"210 non-finite value\(s\) in 208 row\(s\), first at row 0, column 1",
                     expected(X).replace("\\", ""))


@pytest.mark.parametrize("n_init", [1, 3])
def test_dask_array(X, n_init):
    import dask.array as da

    with pytest.raises(NonFiniteError, match=expected(X)):
        GaussianMixture(3, n_init=n_init, max_iter=2).fit(da.from_array(X, chunks=1000))


def test_sweep_on_dask(X):
    import dask.array as da

    with pytest.raises(ValueError, match="Every candidate failed.*k=2 full: " + expected(X)):
        select_model(da.from_array(X, chunks=1000), [2, 3], ["full", "diag"], max_iter=2)


def test_dataframes_name_the_column(X):
    import dask.dataframe as dd

    names = ["speed", "temp", "depth"]
    df = pd.DataFrame(X, columns=names)
    with pytest.raises(NonFiniteError, match=expected(X, names, whole=True)):
        GaussianMixture(3, max_iter=2).fit(df)
    with pytest.raises(NonFiniteError, match=expected(X, names)):
        GaussianMixture(3, max_iter=2).fit(dd.from_pandas(df, npartitions=7))


_invoke = invoke_main  # conftest: distgmm in this process


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_cli_zarr_and_parquet(X, fmt, tmp_path, scheduler_address):
    """On `dask worker` processes: the error travels from a worker with its numbers."""
    names = ["speed", "temp", "depth"]
    if fmt == "zarr":
        path = tmp_path / "x.zarr"
        z = zarr.create_array(store=str(path), shape=X.shape, dtype="f8", chunks=(512, 3))
        z[:] = X
        extra, names = ["--chunk-size", "16KiB"], None
    else:
        path = tmp_path / "x.parquet"
        pd.DataFrame(X, columns=names).to_parquet(path, row_group_size=1000)
        extra = ["--columns", ",".join(names)]
    code, err = _invoke(["fit", path, "-k", 3, "-o", tmp_path / "out", "--address",
                         scheduler_address, "--quiet", *extra])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert re.match("distgmm: error: " + expected(X, names), err), err
    assert not (tmp_path / "out").exists()
