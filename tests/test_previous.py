"""Finding a job's previous run: by its run key, same job, published; and drift maths."""

import json

import numpy as np
import pytest

from distgmm import JobSpec
from distgmm.jobs.previous import previous_output
from distgmm.jobs.report import principal_axes


def publish(path, name="daily"):
    (path / "model").mkdir(parents=True)
    (path / "model" / "model.json").write_text("{}")
    (path / "metrics.json").write_text(json.dumps({"job": {"name": name}}))
    (path / "_SUCCESS").write_text("{}")


def spec(tmp_path, template, settings, name="daily", run_key="date"):
    raw = {"input": {"path": "x.zarr"}, "model": {"n_components": 2},
           "output": {"path": template}, "run_key": run_key}
    if name:
        raw["name"] = name
    return JobSpec.from_mapping(raw, [f"root={tmp_path}", *settings])


def test_the_latest_earlier_run_of_the_same_job_and_region(tmp_path):
    for region, day in [("eu", "2026-01-05"), ("us", "2025-12-30"), ("us", "2025-12-31"),
                        ("us", "2026-01-02")]:
        publish(tmp_path / region / day)
    publish(tmp_path / "us" / "2025-12-29", name="other-job")
    (tmp_path / "us" / ".2025-12-31.old-abc").mkdir()
    (tmp_path / "us" / "2025-12-30b").mkdir()
    s = spec(tmp_path, "{root}/{region}/{date}", ["region=us", "date=2026-01-01"])
    assert previous_output(s) == str(tmp_path / "us" / "2025-12-31")
    s = spec(tmp_path, "{root}/{region}/{date}", ["region=us", "date=2025-12-30"])
    assert previous_output(s) is None  # only another job's run is earlier


def test_numeric_run_keys_and_unpublished_runs(tmp_path):
    for n in (1, 9):
        publish(tmp_path / f"run-{n}")
    (tmp_path / "run-5").mkdir()  # not published
    s = spec(tmp_path, "{root}/run-{n}", ["n=10"], run_key="n")
    assert previous_output(s) == str(tmp_path / "run-9")


def test_unnamed_jobs_have_no_previous_runs(tmp_path):
    publish(tmp_path / "2026-01-01", name=None)
    s = spec(tmp_path, "{root}/{date}", ["date=2026-01-02"], name=None)
    assert previous_output(s) is None


def test_principal_axes_far_from_the_origin():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)) @ np.array([[3.0, 0.0], [1.0, 0.3]]) + 1e8
    c = X[:10].mean(axis=0)
    mean, axes, values = principal_axes((X - c).sum(0), len(X), (X - c).T @ (X - c), c)
    ref = np.linalg.eigh(np.cov((X - X.mean(0)).T, bias=True))
    np.testing.assert_allclose(values, ref[0][::-1], rtol=1e-8)
    assert abs(abs(axes[:, 0] @ ref[1][:, -1]) - 1) < 1e-8
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-14)


@pytest.mark.parametrize("key", ["date", "n"])
def test_no_run_key_in_the_path_means_no_previous_run(tmp_path, key):
    s = spec(tmp_path, "{root}/fixed", [], run_key=key)
    assert s.sibling_outputs() is None and previous_output(s) is None
