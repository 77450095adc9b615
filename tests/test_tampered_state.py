"""Tampered state is never trusted: checkpoints and model files, edited, damaged or
pointed elsewhere, end in exit 2 and one line, and nothing is published or written.

Every edit is tried twice: as is (the content hash no longer matches) and re-hashed,
as a deliberate edit would be (the consistency checks behind the hash catch it). The
untampered checkpoint resumes to the uninterrupted fit's model, bit for bit, and a
corrupt checkpoint is cleared by ``--restart`` as the message says.
"""

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import blobs, invoke_main, run_cli

from distgmm.io.integrity import MAX_CHECKPOINT_BYTES, MAX_MODEL_JSON_BYTES, content_hash
from distgmm.jobs.events import Reporter

BAD = 2


class Killed(Exception):
    pass


invoke = invoke_main  # conftest: distgmm in this process


def _tree(path: Path) -> dict:
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_symlink() or not p.is_file():
            out[str(p.relative_to(path))] = "link or dir"
        else:
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def job(tmp_path_factory, scheduler_address):
    """A fit interrupted after its 4th iteration: its real checkpoint, and the argv."""
    d = tmp_path_factory.mktemp("tampered")
    np.save(d / "x.npy", blobs(n=1500, d=3, k=3, seed=4, spread=2.0)[0])
    argv = ["fit", d / "x.npy", "-k", 3, "--n-init", 2, "--max-iter", 30, "--tol", 1e-8,
            "--init", "random_from_data", "-o", d / "out", "--address", scheduler_address,
            "--quiet"]

    def kill(self, info):
        if info.n_iter == 4:
            raise Killed()

    mp = pytest.MonkeyPatch()
    mp.setattr(Reporter, "iteration", kill)
    try:
        with pytest.raises(Killed):
            invoke(argv)
    finally:
        mp.undo()
    ckpt = d / ".out.checkpoint.json"
    doc = json.loads(ckpt.read_text())
    assert all(r is not None and r["n_iter"] >= 3 for r in doc["state"]["restarts"]), doc
    return {"dir": d, "argv": argv, "ckpt": ckpt, "doc": doc}


def _r0(doc):
    return doc["state"]["restarts"][0]


def _p0(doc):
    return _r0(doc)["params"]


def _scale_cov(doc):
    _p0(doc)["covariances"][0][0][0] *= 2.0


def _negative_weight(doc):
    w = _p0(doc)["weights"]
    w[1] += 2 * w[0]
    w[0] = -w[0]


def _drop_component(doc):
    p = _p0(doc)
    for key in ("weights", "means", "precisions_cholesky", "covariances"):
        p[key] = p[key][:2]
    total = sum(p["weights"])
    p["weights"] = [w / total for w in p["weights"]]


def _long_history(doc):
    r = _r0(doc)
    r["lower_bounds"] = r["lower_bounds"] + [r["lower_bound"]] * (999 - r["n_iter"])
    r["n_iter"] = 999


def _extra_restart(doc):
    s = doc["state"]
    s["seeds"].append(7)
    s["restarts"].append(copy.deepcopy(s["restarts"][0]))


def _nan_first_bound(doc):
    _r0(doc)["lower_bounds"][0] = float("nan")


CKPT_EDITS = [  # (case, edit, what the re-hashed edit is refused for)
    ("n_iter-999", lambda d: _r0(d).update(n_iter=999),
     r"restart 0: n_iter is 999 but the history holds \d iteration\(s\)"),
    ("n_iter-999-with-history", _long_history, r"n_iter is 999, more than max_iter=30"),
    ("converged-true", lambda d: _r0(d).update(converged=True),
     r"converged is true but the last change .* is not below tol=1e-08"),
    ("n_iter-minus-5", lambda d: _r0(d).update(n_iter=-5),
     r"n_iter is -5, not a count of iterations"),
    ("n_iter-boolean", lambda d: _r0(d).update(n_iter=True), r"n_iter is True"),
    ("converged-a-string", lambda d: _r0(d).update(converged="yes"),
     r"converged is 'yes', not true or false"),
    ("nan-means", lambda d: _p0(d)["means"][1].__setitem__(2, float("nan")),
     r"restart 0: means holds 1 non-finite value\(s\)"),
    ("inf-weight", lambda d: _p0(d)["weights"].__setitem__(0, float("inf")),
     r"weights holds 1 non-finite"),
    ("missing-means", lambda d: _p0(d).pop("means"), r"restart 0: parameters lack means"),
    ("missing-lower-bounds", lambda d: _r0(d).pop("lower_bounds"),
     r"lower_bounds is not a list of numbers"),
    ("missing-state", lambda d: d.pop("state"), r"state lacks its seeds or restarts"),
    ("weights-not-summing-to-1", lambda d: _p0(d)["weights"].__setitem__(0, 0.9),
     r"weights sum to .*, not 1"),
    ("negative-weight", _negative_weight, r"weights has a negative entry"),
    ("means-of-another-shape", lambda d: _p0(d).update(means=[m[:2] for m in _p0(d)["means"]]),
     r"means has shape \(3, 2\), expected \(3, 3\)"),
    ("one-component-less", _drop_component, r"weights has shape \(2,\), expected \(3,\)"),
    ("other-covariance-type", lambda d: _p0(d).update(covariance_type="diag"),
     r"covariance_type is 'diag', the job's is 'full'"),
    ("negative-precision-factor",
     lambda d: _p0(d)["precisions_cholesky"][0][1].__setitem__(1, -1.0),
     r"precisions_cholesky is not a positive-definite factor"),
    ("covariances-not-matching", _scale_cov, r"precisions_cholesky does not match covariances"),
    ("lower-bound-not-last", lambda d: _r0(d).update(lower_bound=0.5),
     r"lower_bound 0.5 is not the last of lower_bounds"),
    ("nan-in-history", _nan_first_bound, r"lower_bounds holds a non-finite value"),
    ("extra-seed", lambda d: d["state"]["seeds"].append(5), r"3 seed\(s\) for 2 restart\(s\)"),
    ("negative-seed", lambda d: d["state"]["seeds"].__setitem__(0, -1),
     r"a seed is not a 32-bit unsigned integer"),
    ("restart-not-a-mapping", lambda d: d["state"]["restarts"].__setitem__(0, 5),
     r"restart 0: has no parameters"),
    ("more-restarts-than-n_init", _extra_restart, r"3 restarts, more than n_init=2"),
]


def _ckpt_case(job, text: str, pattern: str):
    d, ckpt = job["dir"], job["ckpt"]
    ckpt.write_text(text)
    before = _tree(d)
    code, err = invoke(job["argv"])
    assert code == BAD, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(rf"distgmm: error: corrupt checkpoint {re.escape(str(ckpt))}: "
                        rf"(.*); rerun with --restart\n", err), err
    assert re.search(pattern, err), err
    assert not (d / "out").exists(), "published from a tampered checkpoint"
    assert _tree(d) == before, "something was written or the checkpoint changed"


@pytest.mark.parametrize("rehash", [False, True], ids=["edited", "edited-and-rehashed"])
@pytest.mark.parametrize("case, edit, pattern", CKPT_EDITS, ids=[c[0] for c in CKPT_EDITS])
def test_tampered_checkpoint(job, case, edit, pattern, rehash):
    doc = copy.deepcopy(job["doc"])
    edit(doc)
    if rehash:
        doc["sha256"] = content_hash(doc)
    else:
        pattern = r"its content hash does not match its content \(edited or damaged\)"
    _ckpt_case(job, json.dumps(doc), pattern)


def test_checkpoint_without_a_hash_is_refused(job):
    """An older distgmm's checkpoint (no hash) cannot be told from an edited one."""
    doc = copy.deepcopy(job["doc"])
    doc.pop("sha256")
    _ckpt_case(job, json.dumps(doc), r"it carries no content hash")


def test_checkpoint_without_identity_is_refused(job):
    doc = copy.deepcopy(job["doc"])
    doc.pop("identity")
    _ckpt_case(job, json.dumps(doc), r"it has no identity")


def _special(job, make, pattern):
    ckpt = job["ckpt"]
    ckpt.unlink()
    make(ckpt)
    before = _tree(job["dir"])
    code, err = invoke(job["argv"])
    assert code == BAD, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(rf"distgmm: error: corrupt checkpoint {re.escape(str(ckpt))}: "
                        rf"{pattern}; rerun with --restart\n", err), err
    assert not (job["dir"] / "out").exists()
    assert _tree(job["dir"]) == before
    if ckpt.is_dir():
        ckpt.rmdir()
    else:
        ckpt.unlink()
    ckpt.write_text(json.dumps(job["doc"]))


def _sparse(size):
    def make(path):
        with open(path, "wb") as fh:
            fh.truncate(size)
    return make


@pytest.mark.parametrize("make, pattern", [
    (lambda p: p.symlink_to("/dev/zero"), r"\S+ is not a regular file"),
    (lambda p: p.mkdir(), r"\S+ is not a regular file"),
    (lambda p: os.mkfifo(p), r"\S+ is not a regular file"),
    (_sparse(MAX_CHECKPOINT_BYTES + 1),
     rf"\S+ holds {MAX_CHECKPOINT_BYTES + 1} bytes, more than the {MAX_CHECKPOINT_BYTES} "
     "expected"),
], ids=["symlink-to-dev-zero", "a-directory", "a-fifo", "larger-than-the-bound"])
def test_checkpoint_that_is_not_a_bounded_file(job, make, pattern):
    _special(job, make, pattern)


def test_checkpoint_on_dev_zero_fails_fast_in_a_real_process(job):
    """Before: read until the kernel killed the driver at 21 GB."""
    ckpt = job["ckpt"]
    ckpt.unlink()
    ckpt.symlink_to("/dev/zero")
    argv = [str(a) for a in job["argv"]]
    try:
        r = run_cli(*argv[:-3], "--quiet", address=argv[-2], timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a checkpoint on /dev/zero was read for 120 s")
    finally:
        ckpt.unlink()
        ckpt.write_text(json.dumps(job["doc"]))
    assert r.returncode == BAD, r.stderr
    assert r.stderr.startswith("distgmm: error: corrupt checkpoint ") \
        and len(r.stderr.splitlines()) == 1, r.stderr[-2000:]


def test_untampered_checkpoint_resumes_to_the_same_model_and_restart_clears_corruption(
        job, tmp_path, scheduler_address):
    """The checks refuse only what is wrong: the real checkpoint resumes to the model of
    an uninterrupted run (bit for bit); --restart replaces a corrupt one."""
    from distgmm import load_model

    d, argv = job["dir"], job["argv"]
    job["ckpt"].write_text(json.dumps(job["doc"]))
    code, err = invoke(argv)
    assert code == 0, err
    resumed = load_model(str(d / "out"))
    ref_argv = [a if a != d / "out" else tmp_path / "ref" for a in argv]
    code, err = invoke(ref_argv)
    assert code == 0, err
    ref = load_model(str(tmp_path / "ref"))
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(resumed, attr), getattr(ref, attr))
    assert resumed.lower_bounds_ == ref.lower_bounds_
    shutil.rmtree(d / "out")
    doc = copy.deepcopy(job["doc"])
    _r0(doc)["n_iter"] = 999
    job["ckpt"].write_text(json.dumps(doc))
    code, err = invoke([*argv, "--restart"])
    assert code == 0, err
    np.testing.assert_array_equal(load_model(str(d / "out")).means_, ref.means_)
    shutil.rmtree(d / "out")
    job["ckpt"].write_text(json.dumps(job["doc"]))


# ----------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model that did not converge in 5 iterations (so `converged` can be falsified)."""
    from distgmm import GaussianMixture

    d = tmp_path_factory.mktemp("model")
    X = blobs(n=600, d=3, k=3, seed=2)[0]
    gm = GaussianMixture(3, max_iter=5, tol=1e-12, random_state=0, init_params="random")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    assert not gm.converged_ and gm.n_iter_ == 5
    gm.save(str(d / "m"))
    np.save(d / "x.npy", X)
    np.save(d / "outside.npy", gm.means_)
    return d


def _meta(m):
    return json.loads((m / "model.json").read_text())


def _write_meta(m, meta, rehash=True):
    if rehash:
        meta["sha256"] = content_hash(meta)
    (m / "model.json").write_text(json.dumps(meta))


def _json_edit(fn, rehash=True):
    def edit(m, outside):
        meta = _meta(m)
        fn(meta, outside)
        _write_meta(m, meta, rehash)
    return edit


def _array_edit(name, fn, recheck=True):
    """Rewrite one .npy file; with ``recheck``, its checksum and the hash too."""
    def edit(m, outside):
        arr = fn(np.load(m / f"{name}.npy"))
        np.save(m / f"{name}.npy", arr, allow_pickle=arr.dtype == object)
        if recheck:
            meta = _meta(m)
            meta["checksums"][f"{name}.npy"] = hashlib.sha256(
                (m / f"{name}.npy").read_bytes()).hexdigest()
            _write_meta(m, meta)
    return edit


def _relink(name, target):
    def edit(m, outside):
        (m / name).unlink()
        (m / name).symlink_to(target if target != "outside" else outside)
    return edit


def _arrays(value):
    return _json_edit(lambda meta, outside: meta["arrays"].__setitem__(
        "means", value if value != "outside" else str(outside)))


def _times(k):
    return lambda a: a * k


def _nan_at(a):
    a = a.copy()
    a[1, 2] = np.nan
    return a


def _fit(**kw):
    return _json_edit(lambda meta, outside: meta["fit"].update(kw))


def _sparse_json(m, outside):
    (m / "model.json").unlink()
    with open(m / "model.json", "wb") as fh:
        fh.truncate(MAX_MODEL_JSON_BYTES + 1)


MODEL_EDITS = [  # (case, edit, pattern)
    ("array-path-escaping", _arrays("../../../../elsewhere/x.npy"),
     r"means: array path '\.\./\.\./\.\./\.\./elsewhere/x\.npy' is not a plain \.npy file "
     r"name inside the model directory"),
    ("array-path-to-a-real-file-outside", _arrays("../outside.npy"),
     r"array path '\.\./outside\.npy' is not a plain"),
    ("array-path-absolute", _arrays("outside"), r"array path '/\S+/outside\.npy' is not"),
    ("array-path-dev-zero", _arrays("/dev/zero"), r"array path '/dev/zero' is not"),
    ("array-path-in-a-subdirectory", _arrays("sub/means.npy"), r"'sub/means\.npy' is not"),
    ("array-symlinked-to-dev-zero", _relink("means.npy", "/dev/zero"),
     r"means\.npy is a symbolic link"),
    ("array-symlinked-outside", _relink("means.npy", "outside"), r"is a symbolic link"),
    ("model-json-symlinked-to-dev-zero", _relink("model.json", "/dev/zero"),
     r"model\.json is not a regular file"),
    ("model-json-larger-than-the-bound", _sparse_json,
     rf"holds {MAX_MODEL_JSON_BYTES + 1} bytes, more than the {MAX_MODEL_JSON_BYTES}"),
    ("array-larger-than-its-shape", _array_edit("means", lambda a: np.zeros((300, 300))),
     r"means\.npy holds \d+ bytes, more than the \d+ expected"),
    ("n_iter-999", _fit(n_iter=999), r"n_iter is 999 but the history holds 5"),
    ("converged-true", _fit(converged=True),
     r"converged is true but the last change .* is not below tol=1e-12"),
    ("n_iter-minus-5", _fit(n_iter=-5), r"n_iter is -5, not a count"),
    ("lower-bound-not-last", _fit(lower_bound=1.0), r"lower_bound 1.0 is not the last"),
    ("n_iter-999-not-rehashed", _json_edit(lambda meta, o: meta["fit"].update(n_iter=999),
                                           rehash=False),
     r"model\.json: its content hash does not match its content"),
    ("nan-means", _array_edit("means", _nan_at), r"means holds 1 non-finite value"),
    ("weights-not-summing-to-1", _array_edit("weights", _times(0.5)), r"weights sum to 0.5"),
    ("precisions-not-matching", _array_edit("precisions", _times(2.0)),
     r"precisions do not match precisions_cholesky"),
    ("covariances-not-matching", _array_edit("covariances", _times(2.0)),
     r"precisions_cholesky does not match covariances"),
    ("array-replaced-without-checksum", _array_edit("means", _times(1.5), recheck=False),
     r"means\.npy does not match its checksum"),
    ("pickled-array-with-checksum",
     _array_edit("means", lambda a: np.array([{"evil": 1}], dtype=object)),
     r"not a readable distgmm model \(means\.npy: .*allow_pickle=False"),
    ("missing-fit", _json_edit(lambda meta, o: meta.pop("fit")),
     r"is not a readable distgmm model \(model\.json lacks or garbles 'fit'\)"),
    ("header-of-other-size", _json_edit(lambda meta, o: meta.update(n_components=4)),
     r"not a readable distgmm model \(weights has shape \(3,\), expected \(4,\)\)"),
]


@pytest.mark.parametrize("command", ["info", "predict"])
@pytest.mark.parametrize("case, edit, pattern", MODEL_EDITS, ids=[c[0] for c in MODEL_EDITS])
def test_tampered_model(saved, tmp_path, case, edit, pattern, command):
    m = tmp_path / "m"
    shutil.copytree(saved / "m", m)
    shutil.copy(saved / "outside.npy", tmp_path / "outside.npy")
    edit(m, tmp_path / "outside.npy")
    before = _tree(tmp_path)
    argv = (["info", m] if command == "info" else
            ["predict", m, saved / "x.npy", "-o", tmp_path / "pred", "--address",
             "tcp://127.0.0.1:9"])
    code, err = invoke([*argv, "--quiet"])
    assert code == BAD, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("distgmm: error: "), err
    assert re.search(pattern, err), err
    if "readable" not in pattern:
        assert err.startswith(f"distgmm: error: corrupt model {m}: "), err
    assert _tree(tmp_path) == before, "something was written"
    assert not (tmp_path / "pred").exists()


@pytest.mark.parametrize("link", ["means.npy", "model.json"])
def test_model_on_dev_zero_fails_fast_in_a_real_process(saved, tmp_path, link):
    """Before: a MemoryError (arrays) or reading without end."""
    m = tmp_path / "m"
    shutil.copytree(saved / "m", m)
    (m / link).unlink()
    (m / link).symlink_to("/dev/zero")
    try:
        r = run_cli("info", m, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a model on /dev/zero was read for 60 s")
    assert r.returncode == BAD, r.stderr
    assert r.stderr.startswith(f"distgmm: error: corrupt model {m}: ") \
        and len(r.stderr.splitlines()) == 1, r.stderr[-2000:]


def test_a_model_written_before_hashes_loads_with_a_warning(saved, tmp_path):
    """Models saved by an older distgmm have no hashes: they load (checked for
    consistency) with a warning; checkpoints without one are refused instead."""
    from distgmm import load_model

    m = tmp_path / "m"
    shutil.copytree(saved / "m", m)
    meta = _meta(m)
    meta.pop("sha256")
    meta.pop("checksums")
    _write_meta(m, meta, rehash=False)
    with pytest.warns(UserWarning, match="written without content hashes"):
        back = load_model(str(m))
    np.testing.assert_array_equal(back.means_, np.load(saved / "m" / "means.npy"))
    r = run_cli("info", m, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 components" in r.stdout


def test_published_metrics_on_dev_zero_are_not_read(saved, tmp_path):
    """A rerun reads the published metrics.json to see whether it is its own: bounded,
    so one on /dev/zero is just not this job's (exit 2, already exists), at once."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "_SUCCESS").write_text("")
    (out / "metrics.json").symlink_to("/dev/zero")
    try:
        r = run_cli("fit", saved / "x.npy", "-k", 3, "-o", out, "--quiet",
                    address="tcp://127.0.0.1:9", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("metrics.json on /dev/zero was read for 60 s")
    assert r.returncode == BAD, r.stderr
    assert re.fullmatch(r"distgmm: error: .*already exists: pass --overwrite.*\n", r.stderr), \
        r.stderr[-2000:]
