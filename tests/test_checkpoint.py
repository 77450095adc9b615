"""Checkpoints: an interrupted fit, resumed, ends with the same model, bit for bit."""

import json
import os

import numpy as np
import pytest
from conftest import blobs

from distgmm import GaussianMixture, JobSpec, load_model, run_job
from distgmm.io.checkpoint import Checkpoint, CheckpointMismatch
from distgmm.jobs.pipeline import checkpoint_url


class Killed(Exception):
    pass


def kill_at(init, n_iter):
    def callback(info):
        if (info.init, info.n_iter) == (init, n_iter):
            raise Killed()
    return callback


def same_model(a, b):
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.lower_bounds_ == b.lower_bounds_
    assert (a.n_iter_, a.converged_, a.lower_bound_) == (b.n_iter_, b.converged_, b.lower_bound_)


@pytest.fixture(scope="module")
def X():
    return blobs(n=3000, d=3, k=4, seed=8, spread=2.5)[0]


@pytest.mark.parametrize("ct", ["full", "diag"])
@pytest.mark.parametrize("where", [(0, 3), (1, 1), (2, 4)])
def test_resumed_fit_equals_uninterrupted(tmp_path, X, ct, where):
    kw = dict(n_components=4, covariance_type=ct, n_init=3, tol=1e-6, max_iter=40,
              random_state=1, init_params="random_from_data")
    ref = GaussianMixture(**kw).fit(X)
    ckpt = Checkpoint(str(tmp_path / "c.json"), {"job": "a"})
    with pytest.raises(Killed):
        GaussianMixture(**kw).fit(X, callback=kill_at(*where), checkpoint=ckpt)
    state = ckpt.restore()
    killed = state.restarts[where[0]]
    if where[1] > 1:  # the state after that restart's last finished iteration
        assert killed.n_iter == where[1] - 1
    else:  # killed in its first iteration: nothing saved for it yet
        assert killed is None
    resumed = GaussianMixture(**kw).fit(X, checkpoint=Checkpoint(str(tmp_path / "c.json"),
                                                                 {"job": "a"}))
    same_model(resumed, ref)


def test_resume_on_the_cluster(client, tmp_path, X):
    import dask.array as da

    Xd = da.from_array(X, chunks=700)
    kw = dict(n_components=4, tol=0, max_iter=8, random_state=0)
    ref = GaussianMixture(**kw).fit(Xd)
    ckpt = Checkpoint(str(tmp_path / "c.json"), {"job": "b"})
    with pytest.raises(Killed):
        GaussianMixture(**kw).fit(Xd, callback=kill_at(0, 5), checkpoint=ckpt)
    resumed, seen = GaussianMixture(**kw), []
    resumed.fit(Xd, callback=lambda info: seen.append(info.n_iter), checkpoint=ckpt)
    assert seen == [5, 6, 7, 8]
    same_model(resumed, ref)


def test_mismatching_or_foreign_checkpoint_is_refused(tmp_path, X):
    ckpt = Checkpoint(str(tmp_path / "c.json"), {"job": "a", "input": "x"})
    GaussianMixture(2, max_iter=2, random_state=0).fit(X, checkpoint=ckpt)
    other = Checkpoint(str(tmp_path / "c.json"), {"job": "a", "input": "y"})
    with pytest.raises(CheckpointMismatch, match="belongs to a different input: rerun with "
                                                 "--restart"):
        other.restore()
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(CheckpointMismatch, match="not a distgmm checkpoint"):
        ckpt.restore()


def test_a_torn_write_keeps_the_previous_checkpoint(tmp_path, X, monkeypatch):
    ckpt = Checkpoint(str(tmp_path / "c.json"), {"job": "a"})
    with pytest.raises(Killed):
        GaussianMixture(2, tol=0, max_iter=10, random_state=0).fit(
            X, callback=kill_at(0, 4), checkpoint=ckpt)
    good = (tmp_path / "c.json").read_bytes()

    def crash(*a, **k):
        raise Killed()

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Killed):
        GaussianMixture(2, tol=0, max_iter=10, random_state=0).fit(X, checkpoint=ckpt)
    assert (tmp_path / "c.json").read_bytes() == good
    assert json.loads(good)["state"]["restarts"][0]["n_iter"] == 3


def test_killed_between_checkpoint_and_publish(client, tmp_path, X, monkeypatch):
    import distgmm.jobs.pipeline as runner  # the stage functions run_job calls

    np.save(tmp_path / "x.npy", X)
    spec = JobSpec.from_mapping({
        "input": {"path": str(tmp_path / "x.npy")},
        "model": {"n_components": 4, "tol": 1e-8, "max_iter": 50},
        "output": {"path": str(tmp_path / "out")},
    })
    real = runner.write_results

    def killed(*a, **k):
        raise Killed()

    monkeypatch.setattr(runner, "write_results", killed)
    with pytest.raises(Killed):
        run_job(spec, client=client)
    assert sorted(os.listdir(tmp_path)) == [".out.checkpoint.json", "x.npy"]
    monkeypatch.setattr(runner, "write_results", real)
    events = []

    class Spy:
        quiet, log_format = False, "json"

        def event(self, name, message="", **fields):
            events.append((name, fields))

        def iteration(self, info):
            events.append(("iteration", {}))

        def wait(self, futures, label):
            pass

    run_job(spec, client=client, reporter=Spy())
    names = [e[0] for e in events]
    assert "resume" in names and "iteration" not in names
    assert not os.path.exists(checkpoint_url(str(tmp_path / "out")))
    ref = GaussianMixture(4, tol=1e-8, max_iter=50, random_state=0).fit(X)
    same_model(load_model(str(tmp_path / "out")), ref)


def test_saved_state_never_holds_a_restart_being_updated(tmp_path, X, monkeypatch):
    """Restarts save the shared state from their own threads: what they save must be
    snapshots, never the object run_em is updating for a resumed restart."""
    import time

    import distgmm.estimator as estimator

    kw = dict(n_components=4, n_init=2, tol=1e-3, max_iter=60, random_state=1,
              init_params="random_from_data")
    ckpt = Checkpoint(str(tmp_path / "c.json"), {"job": "a"})
    with pytest.raises(Killed):
        GaussianMixture(**kw).fit(X, callback=kill_at(0, 3), checkpoint=ckpt)
    live, shared = [], []
    real_run_em = estimator.run_em

    def spy_run_em(*args, resume=None, **kwargs):
        if resume is not None:
            live.append(resume)
        return real_run_em(*args, resume=resume, **kwargs)

    class Checking(Checkpoint):
        def save(self, state):
            shared.extend(r for r in state.restarts if any(r is obj for obj in live))
            super().save(state)

    def slow_restart_0(info):  # restart 1 saves while restart 0 sits in its callback
        if info.init == 0:
            time.sleep(0.05)

    monkeypatch.setattr(estimator, "run_em", spy_run_em)
    resumed = GaussianMixture(**kw).fit(X, callback=slow_restart_0,
                                        checkpoint=Checking(ckpt.url, {"job": "a"}))
    assert len(live) == 2 and shared == []
    monkeypatch.setattr(estimator, "run_em", real_run_em)
    same_model(resumed, GaussianMixture(**kw).fit(X))
