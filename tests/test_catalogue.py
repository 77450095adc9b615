"""Every bad input the project knows, and what it gets from the `distgmm` command.

Exit 2 with one line on stderr naming the problem (and nothing written), exit 75 for
an unreachable cluster, or success where that is the right answer.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from conftest import blobs, invoke_main

from distgmm import GaussianMixture

OK, BAD, TRANSIENT = 0, 2, 75


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogue")
    X = blobs(n=1200, d=3, k=3, seed=3)[0]

    def zarr_array(name, data, chunks=(300, 3)):
        z = zarr.create_array(store=str(d / name), shape=data.shape, dtype=data.dtype,
                              chunks=chunks[: data.ndim] if data.ndim else chunks)
        if data.size:
            z[:] = data
        return z

    zarr_array("good.zarr", X)
    bad = X.copy()
    bad[700, 2] = np.nan
    zarr_array("nan.zarr", bad)
    many = X.copy()
    many[::97, 1] = np.nan  # 13 rows in every chunk: the count is over all of them
    zarr_array("nan97.zarr", many)
    np.save(d / "good.npy", X)
    inf = X.copy()
    inf[5, 0] = np.inf
    np.save(d / "inf.npy", inf)
    np.save(d / "same.npy", np.ones((300, 3)))
    const = X.copy()
    const[:, 1] = 4.0
    np.save(d / "const.npy", const)
    zarr_array("tiny.zarr", X[:2])
    zarr_array("empty.zarr", np.empty((0, 3)))
    zarr_array("vector.zarr", X[:, 0], chunks=(300,))
    np.save(d / "cube.npy", np.ones((4, 4, 4)))
    np.save(d / "complex.npy", np.ones((40, 2), dtype=complex))
    np.save(d / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    (d / "empty.npy").write_bytes(b"")
    zarr_array("corrupt_chunk.zarr", X)
    (d / "corrupt_chunk.zarr" / "c" / "2" / "0").write_bytes(b"garbage" * 10)
    (d / "corrupt_meta.zarr").mkdir()
    (d / "corrupt_meta.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array"}')
    g = zarr.open_group(str(d / "group.zarr"), mode="w")
    g.create_array("a", shape=X.shape, chunks=(300, 3), dtype="f8")[:] = X
    g.create_array("b", shape=X.shape, chunks=(300, 3), dtype="f8")[:] = X
    (d / "neither").mkdir()
    (d / "neither" / "notes.txt").write_text("x")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": np.arange(400), "a": rng.normal(size=400),
                       "b": pd.array(rng.integers(0, 9, 400), dtype="Int64"),
                       "name": rng.choice(["x", "y"], 400),
                       "day": np.repeat(["2026-11-21", "2026-11-22"], 200)})
    pq.write_to_dataset(pa.Table.from_pandas(df, preserve_index=False), d / "lake",
                        partition_cols=["day"])
    # a footer that reads, a data page that does not: found by a worker during the fit
    pq.write_table(pa.Table.from_pandas(df.drop(columns="day"), preserve_index=False),
                   d / "corrupt_pages.parquet", row_group_size=200, compression="zstd")
    page = pq.read_metadata(d / "corrupt_pages.parquet").row_group(1).column(1)
    with open(d / "corrupt_pages.parquet", "r+b") as fh:
        fh.seek(page.data_page_offset)
        fh.write(b"\xff" * 64)
    nulls = df.drop(columns="day").copy()
    nulls.loc[123, "b"] = pd.NA
    nulls.to_parquet(d / "nulls.parquet", index=False)
    df.drop(columns="day").to_parquet(d / "nullable_ok.parquet", index=False)
    specs = {
        "unsafe.yaml": "input: !!python/object/apply:os.system ['touch pwned']\n",
        "unknown.yaml": "input: {path: good.zarr}\nmodel: {n_components: 2, k: 3}\n"
                        "output: {path: out}\n",
        "wrongtype.yaml": "input: {path: good.zarr}\nmodel: {n_components: three}\n"
                          "output: {path: out}\n",
        "badcov.yaml": "input: {path: good.zarr}\nmodel: {n_components: 2, covariance_type: "
                       "dense}\noutput: {path: out}\n",
        "template.yaml": "input: {path: '{root}/good.zarr'}\nmodel: {n_components: 2}\n"
                         "output: {path: out}\n",
        "broken.yaml": "input: [unclosed\n",
        "broken.toml": "[input\npath = 1\n",
        "job.json": "{}",
        "localopts.yaml": "input: {path: good.zarr, storage_options: {anon: true}}\n"
                          "model: {n_components: 2}\noutput: {path: out}\n",
        "nosection.yaml": "input: {path: good.zarr}\noutput: {path: out}\n",
        "bomb.yaml": 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
            f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)),
        "deep.yaml": "input: {path: good.zarr}\nmodel: {n_components: " + "[" * 5000 + "2"
                     + "]" * 5000 + "}\noutput: {path: out}\n",
        "dupkey.yaml": "input: {path: good.zarr}\nmodel:\n  n_components: 2\n  n_components: 3\n"
                       "output: {path: out}\n",
        "boolk.yaml": "input: {path: good.zarr}\nmodel: {n_components: true}\noutput: {path: o}\n",
        "hugerange.yaml": "input: {path: good.zarr}\nmodel: {n_components: '1..1000000000'}\n"
                          "output: {path: out}\n",
        "inftol.yaml": "input: {path: good.zarr}\nmodel: {n_components: 2, tol: .inf}\n"
                       "output: {path: out}\n",
    }
    for name, text in specs.items():
        (d / name).write_text(text)
    GaussianMixture(2, random_state=0).fit(X[:, :2]).save(str(d / "model2d"))
    GaussianMixture(2, random_state=0).fit(X[:, :2]).save(str(d / "model_noarrays"))
    (d / "model_noarrays" / "covariances.npy").unlink()
    (d / "notamodel").mkdir()
    GaussianMixture(2, random_state=0).fit(X).save(str(d / "model3d"))
    GaussianMixture(2, random_state=0).fit(X).save(str(d / "escaping_model"))
    meta = json.loads((d / "escaping_model" / "model.json").read_text())
    meta["arrays"]["means"] = "../model3d/means.npy"  # re-hashed: a deliberate edit
    from distgmm.io.integrity import content_hash

    meta["sha256"] = content_hash(meta)
    (d / "escaping_model" / "model.json").write_text(json.dumps(meta))
    return d


CASES = [
    # -------------------------------------------------------------- the data
    ("nan-in-one-chunk", ["fit", "{d}/nan.zarr", "-k", 3], BAD, r"NaN or infinity.*row 700"),
    ("nan-in-every-chunk", ["fit", "{d}/nan97.zarr", "-k", 3, "--chunk-size", "4KiB"], BAD,
     r"13 non-finite value\(s\) in 13 row\(s\), first at row 0, column 1\."),
    ("inf-value", ["fit", "{d}/inf.npy", "-k", 3], BAD, r"NaN or infinity.*row 5, column 0"),
    ("null-in-nullable-column", ["fit", "{d}/nulls.parquet", "-k", 2, "--columns", "a,b"],
     BAD, r"NaN or infinity.*row 123, column 1"),
    ("nullable-without-nulls", ["fit", "{d}/nullable_ok.parquet", "-k", 2, "--columns", "a,b"],
     OK, None),
    ("string-feature-column", ["fit", "{d}/lake", "-k", 2, "--columns", "a,name"], BAD,
     r"Non-numeric feature column\(s\) \['name'\]"),
    ("partition-column-as-feature", ["fit", "{d}/lake", "-k", 2, "--columns", "a,day"], BAD,
     r"Non-numeric feature column\(s\) \['day'\]"),
    ("all-identical-rows", ["fit", "{d}/same.npy", "-k", 2], BAD,
     r"collapsed.*Try fewer components"),
    ("one-constant-feature", ["fit", "{d}/const.npy", "-k", 3], OK, None),
    ("fewer-rows-than-k", ["fit", "{d}/tiny.zarr", "-k", 3], BAD, r"2 rows but n_components=3"),
    ("zero-rows", ["fit", "{d}/empty.zarr", "-k", 1], BAD, r"0 rows but n_components=1"),
    ("1-d-array", ["fit", "{d}/vector.zarr", "-k", 2], BAD, r"is 1-D; distgmm needs a 2-D"),
    ("3-d-array", ["fit", "{d}/cube.npy", "-k", 2], BAD, r"is 3-D; distgmm needs a 2-D"),
    ("complex-values", ["fit", "{d}/complex.npy", "-k", 2], BAD, r"complex128.*not a real"),
    ("pickled-objects", ["fit", "{d}/objects.npy", "-k", 2], BAD, r"not a plain .npy"),
    ("empty-npy-file", ["fit", "{d}/empty.npy", "-k", 2], BAD, r"not a plain .npy"),
    ("missing-file", ["fit", "{d}/nope.zarr", "-k", 2], BAD, r"No Zarr array or group"),
    ("corrupt-zarr-chunk", ["fit", "{d}/corrupt_chunk.zarr", "-k", 2, "--chunk-size", "4KiB"],
     BAD, r"cannot read rows 600-899 .*corrupt"),
    ("corrupt-parquet-pages", ["fit", "{d}/corrupt_pages.parquet", "-k", 2, "--columns",
                               "a"], BAD,
     r"corrupt_pages.parquet: cannot read row groups 0-1 .*corrupt or incomplete"),
    ("corrupt-zarr-metadata", ["fit", "{d}/corrupt_meta.zarr", "-k", 2], BAD,
     r"unreadable Zarr metadata"),
    ("group-without-array-name", ["fit", "{d}/group.zarr", "-k", 2], BAD,
     r"holding \['a', 'b'\]: name the array"),
    ("wrong-array-name", ["fit", "{d}/group.zarr", "-k", 2, "--array", "c"], BAD,
     r"No array 'c'"),
    ("unknown-format", ["fit", "{d}/neither", "-k", 2], BAD, r"pass --format"),
    ("missing-column", ["fit", "{d}/lake", "-k", 2, "--columns", "a,speed"], BAD,
     r"\['speed'\] not in"),
    ("passthrough-clashes-with-an-output-column", ["fit", "{d}/lake", "-k", 2, "--columns",
     "a", "--passthrough", "label"], BAD, r"\['label'\] clash with output columns"),
    ("empty-filter-result", ["fit", "{d}/lake", "-k", 2, "--columns", "a",
                             "--filter", "day == '1999-01-01'"], BAD, r"No rows .*filters"),
    ("unreadable-filter", ["fit", "{d}/lake", "-k", 2, "--filter", "day is today"], BAD,
     r"COLUMN OP VALUE"),
    ("filter-of-wrong-type", ["fit", "{d}/lake", "-k", 2, "--columns", "a",
                              "--filter", "day == 5"], BAD, r"column's type"),
    ("option-for-another-format", ["fit", "{d}/good.zarr", "-k", 2, "--id-column", "id"],
     BAD, r"\['id_column'\] do not apply to zarr input"),
    ("url-without-its-filesystem", ["fit", "s3://no-bucket/x.zarr", "-k", 2], BAD,
     # without s3fs: install it; with s3fs (the test extra) and no credentials: set them
     r"s3fs.*distgmm\[cloud\]|no usable credentials for s3://no-bucket/x.zarr"),
    # ----------------------------------------------------------- options and specs
    ("negative-k", ["fit", "{d}/good.zarr", "-k", -1], BAD,
     r"model.n_components: Input should be greater than or equal to 1 \(got -1\)"),
    ("negative-tol", ["fit", "{d}/good.zarr", "-k", 2, "--tol", -1], BAD, r"model.tol"),
    ("unknown-option", ["fit", "{d}/good.zarr", "-k", 2, "--colour"], BAD,
     r"No such option '--colour'"),
    ("half-precision", ["fit", "{d}/good.zarr", "-k", 2, "--compute-dtype", "float16"], BAD,
     r"--compute-dtype.*'float16' is not one of 'float64', 'float32'"),
    ("float32-compute", ["fit", "{d}/good.zarr", "-k", 2, "--compute-dtype", "float32"],
     OK, None),
    ("garbage-chunk-size", ["fit", "{d}/good.zarr", "-k", 2, "--chunk-size", "lots"], BAD,
     r"input.chunk_size"),
    ("unsafe-yaml-tag", ["run", "{d}/unsafe.yaml"], BAD, r"python/object.*refused"),
    ("unknown-spec-key", ["run", "{d}/unknown.yaml"], BAD,
     r"unknown key 'model.k'; allowed here: n_components"),
    ("wrong-type-in-spec", ["run", "{d}/wrongtype.yaml"], BAD, r"model.n_components.*integer"),
    ("invalid-choice-in-spec", ["run", "{d}/badcov.yaml"], BAD, r"model.covariance_type"),
    ("missing-section", ["run", "{d}/nosection.yaml"], BAD, r"missing required key 'model'"),
    ("template-without-value", ["run", "{d}/template.yaml"], BAD,
     r"\{root\} has no value: pass --set root="),
    ("set-without-template", ["run", "{d}/template.yaml", "--set", "root={d}", "--set",
                              "day=1"], BAD, r"--set day=\.\.\. matches no \{day\}"),
    ("malformed-yaml", ["run", "{d}/broken.yaml"], BAD, r"not valid YAML"),
    ("malformed-toml", ["run", "{d}/broken.toml"], BAD, r"not valid TOML"),
    ("wrong-spec-extension", ["run", "{d}/job.json"], BAD, r"\.yaml, \.yml or \.toml"),
    ("missing-spec", ["run", "{d}/none.yaml"], BAD, r"No job spec"),
    ("storage-options-on-local-path", ["run", "{d}/localopts.yaml"], BAD,
     r"storage_options apply to URLs"),
    ("yaml-alias-bomb", ["run", "{d}/bomb.yaml"], BAD, r"expands to more than 100000 values"),
    ("yaml-nested-5000-deep", ["run", "{d}/deep.yaml"], BAD, r"nested more than 32 levels"),
    ("duplicate-yaml-key", ["run", "{d}/dupkey.yaml"], BAD,
     r"duplicate key 'n_components' \(line 4\)"),
    ("boolean-as-a-number", ["run", "{d}/boolk.yaml"], BAD,
     r"model.n_components: true/false is not a number"),
    ("range-of-a-billion", ["run", "{d}/hugerange.yaml"], BAD,
     r"has 1000000000 candidates; a sweep fits at most 1000"),
    ("infinite-tol", ["run", "{d}/inftol.yaml"], BAD, r"tol=inf is not a usable value"),
    ("memory-output", ["fit", "{d}/good.zarr", "-k", 2, "--output", "memory://x/out"], BAD,
     r"memory://x/out is in this process's memory"),
    ("output-is-the-input", ["fit", "{d}/good.zarr", "-k", 2, "--output", "{d}/good.zarr",
                             "--overwrite"], BAD, r"the output \S+ is the input"),
    # ----------------------------------------------------------- outputs and models
    ("existing-output-of-another-job", ["fit", "{d}/good.zarr", "-k", 2, "--output",
                                        "{pub}"], BAD, r"already exists: pass --overwrite"),
    ("rerun-of-a-published-job", ["fit", "{d}/good.zarr", "-k", 3, "--output", "{pub}"], OK,
     None),
    ("checkpoint-of-another-job", ["fit", "{d}/good.zarr", "-k", 2], BAD,
     r"checkpoint .* belongs to a different input and job: rerun with --restart"),
    ("not-a-model", ["predict", "{d}/notamodel", "{d}/good.zarr"], BAD, r"no model.json"),
    ("model-of-other-features", ["predict", "{d}/model2d", "{d}/good.zarr"], BAD,
     r"X has 3 features, but GaussianMixture is expecting 2 .* other columns"),
    ("info-on-a-missing-model", ["info", "{d}/gone"], BAD, r"No model at"),
    ("outliers-fraction-of-a-half", ["fit", "{d}/good.zarr", "-k", 2, "--outliers", 0.5], BAD,
     r"model.outliers: Input should be less than 0.5 \(got 0.5\)"),
    ("outliers-fraction-zero", ["fit", "{d}/good.zarr", "-k", 2, "--outliers", 0], BAD,
     r"model.outliers: Input should be greater than 0 \(got 0"),
    ("outliers-fraction-in-a-run", ["run", "{d}/template.yaml", "--set", "root={d}",
                                    "--outliers", 0.75], BAD, r"model.outliers.*less than 0.5"),
    ("sample-from-a-model-missing-arrays", ["sample", "{d}/model_noarrays", "-n", 10,
                                            "--output", "s.zarr"], BAD,
     r"not a readable distgmm model \(covariances.npy is missing\)"),
    ("sample-zero-rows", ["sample", "{d}/model2d", "-n", 0, "--output", "s.zarr"], BAD,
     r"'--n-samples'.*0 is not in the range x>=1"),
    ("sample-to-an-unknown-format", ["sample", "{d}/model2d", "-n", 10, "--output", "s.csv"],
     BAD, r"cannot tell the format of s.csv from its name: end it in .zarr or .parquet"),
    ("model-array-path-escaping", ["predict", "{d}/escaping_model", "{d}/good.zarr"], BAD,
     r"corrupt model .*array path '\.\./model3d/means\.npy' is not a plain"),
    ("info-on-a-corrupt-model", ["info", "{d}/escaping_model"], BAD, r"corrupt model"),
    ("zero-stall-timeout", ["fit", "{d}/good.zarr", "-k", 2, "--stall-timeout", 0], BAD,
     r"cluster.stall_timeout: Input should be greater than 0"),
    ("negative-lease-wait", ["fit", "{d}/good.zarr", "-k", 2, "--lease-wait", -1], BAD,
     r"output.lease_wait: Input should be greater than or equal to 0"),
    ("same-job-running-elsewhere", ["fit", "{d}/good.zarr", "-k", 2, "--lease-wait", 0],
     OK, None),
    # ------------------------------------------------------------------- the cluster
    ("unreachable-scheduler", ["fit", "{d}/good.zarr", "-k", 2, "--address",
                               "tcp://127.0.0.1:9"], TRANSIENT, r"cannot reach the Dask "),
]


@pytest.fixture(scope="module")
def published(d, tmp_path_factory, scheduler_address):
    out = tmp_path_factory.mktemp("published") / "out"
    code, err = invoke(["fit", str(d / "good.zarr"), "-k", 3, "--output", str(out),
                        "--quiet", "--address", scheduler_address])
    assert code == 0, err
    return out


invoke = invoke_main  # conftest: distgmm in this process


def _tree(path: Path) -> set:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("case, argv, expected, pattern", CASES, ids=[c[0] for c in CASES])
def test_catalogue(case, argv, expected, pattern, d, published, tmp_path, scheduler_address,
                   monkeypatch):
    import dask

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(dask.config.config["distributed"]["comm"]["timeouts"], "connect", "2s")
    out = tmp_path / "out"
    argv = [str(a).format(d=d, pub=published) for a in argv]
    if argv[0] in ("fit", "predict") and "--output" not in argv:
        argv += ["--output", str(out)]
    if argv[0] in ("run",):
        argv += ["--set", f"output.path={out}"]
    if "--address" not in argv and argv[0] != "info":
        argv += ["--address", scheduler_address]
    if case == "checkpoint-of-another-job":
        (tmp_path / ".out.checkpoint.json").write_text(json.dumps(
            {"format": "distgmm-checkpoint", "version": 2,
             "identity": {"job": "other", "input": "other"}, "state": {}}))
    if case == "same-job-running-elsewhere":  # a live holder: this very process
        import socket
        import time

        (tmp_path / ".out.lease.json").write_text(json.dumps(
            {"job": "x", "pid": os.getpid(), "host": socket.gethostname(), "token": "other",
             "started": time.time(), "heartbeat": time.time(), "ttl": 300}))
    before_data, before_here = _tree(d), _tree(tmp_path)
    published_metrics = (published / "metrics.json").read_text()
    code, err = invoke(argv + ["--quiet"])
    assert code == expected, err
    assert _tree(d) == before_data, "the inputs were modified"
    assert (published / "metrics.json").read_text() == published_metrics
    if expected == OK:
        assert err == ""
        if case == "same-job-running-elsewhere":  # exit 0 without computing anything
            assert not out.exists() and (tmp_path / ".out.lease.json").exists()
        return
    assert len(err.strip().splitlines()) == 1 and err.startswith("distgmm: error: "), err
    assert pattern is not None and re.search(pattern, err), err
    assert _tree(tmp_path) == before_here, "something was written"
    assert not os.path.exists(tmp_path / "pwned")


def test_the_catalogue_is_complete_enough():
    assert len(CASES) >= 30
    assert sum(expected == BAD for _, _, expected, _ in CASES) >= 30
