"""The private zarr / zarrs route (distgmm/io/_zarr.py): present, same bytes, loud when broken."""

from __future__ import annotations

import importlib
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from conftest import blobs
from sklearn.exceptions import ConvergenceWarning

from distgmm import GaussianMixture
from distgmm.io import _zarr
from distgmm.io.zarr_rows import ZarrRows
from distgmm.parallel import _dask, readers


@pytest.fixture
def recheck(monkeypatch):
    """Decide the route again after the test broke (and then restored) an assumption."""
    def again():
        _zarr._usable.clear()
        return _zarr.usable()

    yield again
    monkeypatch.undo()
    _zarr._usable.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the real zarr and zarrs pass again
        assert _zarr.usable()


def test_every_private_symbol_still_exists(tmp_path):
    """An upgrade that moves a private API fails here, not silently in production."""
    from fsspec.implementations.local import LocalFileSystem
    from zarr.core.array import AsyncArray
    from zarr.storage import FsspecStore

    pipeline = importlib.import_module("zarrs.pipeline")  # in the test extra: CI runs it
    assert "codec_pipeline" in AsyncArray.__dataclass_fields__
    store = FsspecStore.from_url(str(tmp_path))
    assert isinstance(store.fs.sync_fs, LocalFileSystem) and store.path == str(tmp_path)
    for name in ("ZarrsCodecPipeline", "get_codec_pipeline_impl",
                 "get_codec_pipeline_fallback", "UnsupportedMetadataError"):
        assert hasattr(pipeline, name), name
    assert {"metadata", "store", "impl", "python_impl"} <= set(
        pipeline.ZarrsCodecPipeline.__dataclass_fields__)
    assert _zarr.usable()


def write(path, data, **kw):
    z = zarr.create_array(store=str(path), shape=data.shape, dtype=data.dtype, **kw)
    z[:] = data
    return zarr.open_array(str(path), mode="r")


LAYOUTS = {
    "v3 zstd, 7-row chunks": {"chunks": (7, 3)},
    "v3 uncompressed": {"chunks": (50, 3), "compressors": None},
    "v3 gzip": {"chunks": (50, 3), "compressors": zarr.codecs.GzipCodec()},
    "v3 blosc": {"chunks": (50, 3), "compressors": zarr.codecs.BloscCodec()},
    "v3 sharded": {"chunks": (10, 3), "shards": (40, 3)},
    "v2": {"chunks": (33, 3), "zarr_format": 2},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["f8", "f4", "i2"])
def test_the_twin_reads_the_same_bytes(tmp_path, layout, dtype):
    data = (np.random.default_rng(3).normal(size=(301, 3)) * 100).astype(dtype)
    array = write(tmp_path / "x.zarr", data, **LAYOUTS[layout])
    twin = _zarr.zarrs_twin(array, *_zarr.local_directory(array))
    assert twin is not None, "zarrs could not read a layout it supports"
    assert type(twin.async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"
    for rows in (slice(0, 301), slice(5, 6), slice(6, 250), slice(299, 301)):
        got, want = twin[rows], array[rows]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_missing_chunks_read_as_the_fill_value(tmp_path):
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=(100, 2), chunks=(10, 2),
                          dtype="f8", fill_value=-7.5)
    z[30:40] = 1.0  # every other chunk never written
    array = zarr.open_array(str(tmp_path / "x.zarr"), mode="r")
    twin = _zarr.zarrs_twin(array, *_zarr.local_directory(array))
    np.testing.assert_array_equal(twin[:], array[:])
    assert (twin[:30] == -7.5).all()


def test_an_array_inside_a_group_and_dask_s_fsspec_store(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    z = group.create_array("sub/x", shape=(60, 2), chunks=(7, 2), dtype="f8")
    z[:] = np.arange(120.0).reshape(60, 2)
    (array,) = [v for v in dict(da.from_zarr(str(tmp_path / "g.zarr"), component="sub/x")
                                .__dask_graph__()).values() if isinstance(v, zarr.Array)]
    root, path = _zarr.local_directory(array)  # dask opens an FsspecStore on local files
    assert path == "sub/x"
    np.testing.assert_array_equal(_zarr.zarrs_twin(array, root, path)[:], z[:])


def test_other_stores_keep_zarr_python(tmp_path):
    memory = zarr.create_array(store={}, shape=(10, 2), chunks=(5, 2), dtype="f8")
    assert _zarr.local_directory(memory) is None
    assert _zarr.read_adapter(memory) is None
    assert _zarr.read_adapter(np.zeros((4, 2))) is None
    zipped = zarr.storage.ZipStore(str(tmp_path / "x.zip"), mode="w")
    z = zarr.create_array(store=zipped, shape=(10, 2), chunks=(5, 2), dtype="f8")
    assert _zarr.local_directory(z) is None


def test_folded_chunk_reads_go_through_the_adapter_once_per_array(tmp_path):
    array = write(tmp_path / "x.zarr", np.arange(60.0).reshape(30, 2), chunks=(5, 2))
    X = da.from_zarr(array)
    keys = [(X.name, i, 0) for i in range(X.numblocks[0])]
    folded = _dask.fold_inputs(dict(X.__dask_graph__()), keys)
    reads = _dask.coalesce_reads([(folded[k], None) for k in keys], 1 << 20)
    assert [sizes for *_, sizes in reads] == [(5,) * 6]  # one ZarrRows: still coalesced
    (x, _, _), = reads
    assert isinstance(x.args[0].value, ZarrRows)
    np.testing.assert_array_equal(x({}), array[:])


def fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(3, tol=0, max_iter=4, random_state=0, **kw).fit(X)


def test_out_of_core_fit_same_bits_with_and_without_zarrs(tmp_path, monkeypatch):
    X = blobs(n=3000, d=3, k=3, seed=5)[0]
    write(tmp_path / "x.zarr", X, chunks=(50, 3))
    built = []
    real = _zarr.zarrs_twin
    monkeypatch.setattr(_zarr, "zarrs_twin", lambda *a: built.append(a) or real(*a))
    with dask.config.set(scheduler="threads"):
        on = fit(da.from_zarr(str(tmp_path / "x.zarr")), cache="none")
        assert built, "the fit did not read through zarrs"
        built.clear()
        monkeypatch.setenv(_zarr.ENV_SWITCH, "0")
        off = fit(da.from_zarr(str(tmp_path / "x.zarr")), cache="none")
    assert not built
    np.testing.assert_array_equal(on.means_, off.means_)
    np.testing.assert_array_equal(on.covariances_, off.covariances_)
    np.testing.assert_array_equal(on.lower_bounds_, off.lower_bounds_)


def test_a_corrupt_chunk_read_through_zarrs_names_its_rows(tmp_path):
    write(tmp_path / "c.zarr", np.random.default_rng(0).random((1000, 3)), chunks=(200, 3))
    (tmp_path / "c.zarr" / "c" / "2" / "0").write_bytes(b"garbage" * 10)
    rows = ZarrRows(zarr.open_array(str(tmp_path / "c.zarr"), mode="r"), "c.zarr")
    with pytest.raises(ValueError, match=r"c.zarr: cannot read rows 300-599 .*corrupt"):
        rows[(slice(300, 600), slice(0, 3))]
    assert type(rows._reader.async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"


def test_the_env_switch_turns_the_route_off(tmp_path, monkeypatch):
    array = write(tmp_path / "x.zarr", np.zeros((10, 2)), chunks=(5, 2))
    assert isinstance(readers.adapted(array), ZarrRows)
    monkeypatch.setenv(_zarr.ENV_SWITCH, "0")
    assert readers.adapted(array) is array
    assert _zarr.fast_reader(array) is array


def test_an_untested_version_warns_and_reads_with_zarr_python(tmp_path, monkeypatch, recheck):
    array = write(tmp_path / "x.zarr", np.ones((10, 2)), chunks=(5, 2))
    monkeypatch.setattr(_zarr, "TESTED_ZARRS", ("0.0.1", "0.0.2"))
    with pytest.warns(RuntimeWarning, match=r"route 'zarrs'.*outside the tested ranges.*"
                                            r"Consequence: Zarr chunks are decoded"):
        assert recheck() is False
    assert _zarr.fast_reader(array) is array and _zarr.read_adapter(array) is None


def test_a_changed_api_warns_once_and_reads_with_zarr_python(tmp_path, monkeypatch, recheck):
    import zarrs.pipeline

    array = write(tmp_path / "x.zarr", np.arange(20.0).reshape(10, 2), chunks=(5, 2))
    recheck()

    def moved(*args, **kwargs):
        raise AttributeError("get_codec_pipeline_impl moved")

    monkeypatch.setattr(zarrs.pipeline, "get_codec_pipeline_impl", moved)
    rows = ZarrRows(array, "x.zarr")
    with pytest.warns(RuntimeWarning, match=r"route 'zarrs'.*AttributeError: get_codec"):
        np.testing.assert_array_equal(rows[(slice(0, 10), slice(0, 2))], array[:])
    assert rows._reader is array
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # off now: no second warning
        assert _zarr.fast_reader(array) is array


@pytest.mark.parametrize("kind", ["big-endian v2", "Fortran order v2", "F by zarr's config"])
def test_arrays_zarrs_cannot_write_out_keep_zarr_python(tmp_path, monkeypatch, kind):
    # zarrs builds a pipeline for these, then refuses at the first read
    data = np.arange(600.0).reshape(200, 3)
    kw = {"big-endian v2": {"dtype": ">f8", "zarr_format": 2},
          "Fortran order v2": {"order": "F", "zarr_format": 2}}.get(kind, {})
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=data.shape, chunks=(20, 3),
                          dtype=kw.pop("dtype", "f8"), **kw)
    z[:] = data
    if kind == "F by zarr's config":
        monkeypatch.setitem(zarr.config.config["array"], "order", "F")
    array = zarr.open_array(str(tmp_path / "x.zarr"), mode="r")
    assert _zarr.fast_reader(array) is array
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with dask.config.set(scheduler="threads"):
            got = fit(da.from_zarr(str(tmp_path / "x.zarr")), cache="none")
    np.testing.assert_allclose(got.means_[np.argsort(got.means_[:, 0])].mean(), data.mean(),
                               rtol=0.2)


def test_a_read_the_twin_fails_is_a_corrupt_store_naming_the_switch(tmp_path):
    array = write(tmp_path / "x.zarr", np.arange(40.0).reshape(20, 2), chunks=(5, 2))
    rows = ZarrRows(array, "x.zarr (test)")

    class Refusing:
        def __getitem__(self, key):
            raise RuntimeError("refused by the twin")

    rows._reader = Refusing()
    with pytest.raises(ValueError, match=r"x.zarr \(test\): cannot read rows 0-9 "
                                         r"\(RuntimeError: refused by the twin\) \(read by "
                                         r"zarrs; DISTGMM_ZARRS=0 .*corrupt"):
        rows[(slice(0, 10), slice(0, 2))]


def test_an_empty_shard_file_is_corrupt_not_fill_values(tmp_path):
    # zarr-python reads a 0-byte shard (an interrupted write) as missing: fill values
    write(tmp_path / "s.zarr", np.ones((40, 2)), chunks=(5, 2), shards=(20, 2))
    (tmp_path / "s.zarr" / "c" / "0" / "0").write_bytes(b"")
    rows = ZarrRows(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"), "s.zarr")
    with pytest.raises(ValueError, match=r"s.zarr: cannot read rows 0-19 .*corrupt"):
        rows[(slice(0, 20), slice(0, 2))]


def test_only_the_array_a_getter_reads_is_adapted(tmp_path):
    # a task that uses the zarr.Array itself (here its .blocks) must get the array
    z = write(tmp_path / "x.zarr", np.arange(600.0).reshape(200, 3), chunks=(20, 3))
    zd = dask.delayed(z, traverse=False)
    parts = [da.from_delayed(dask.delayed(lambda a, i: a.blocks[i])(zd, i), (20, 3), "f8")
             for i in range(10)]
    X = da.concatenate(parts)
    with dask.config.set(scheduler="threads"):
        got = fit(X, cache="none")
    assert np.isfinite(got.lower_bound_)
