"""Reports: valid PNGs and one self-contained HTML page; principal axes from sums."""

import base64
import re

import numpy as np
from conftest import blobs

from distgmm import JobSpec, run_job
from distgmm.jobs.report import principal_axes

PNG = b"\x89PNG\r\n\x1a\n"


def test_principal_axes_match_numpy():
    X = np.random.default_rng(0).normal(size=(500, 4)) @ np.diag([3.0, 1.0, 0.5, 2.0])
    mean, axes, values = principal_axes(X.sum(0), len(X), X.T @ X)
    np.testing.assert_allclose(mean, X.mean(0))
    ref_values, ref_vectors = np.linalg.eigh(np.cov(X.T, bias=True))
    np.testing.assert_allclose(values, ref_values[::-1][:2], rtol=1e-10)
    for j in range(2):
        assert abs(abs(axes[:, j] @ ref_vectors[:, ::-1][:, j]) - 1) < 1e-10


def _run(client, tmp_path, model):
    np.save(tmp_path / "x.npy", blobs(n=2000, d=3, k=3, seed=6)[0])
    spec = JobSpec.from_mapping({"input": {"path": str(tmp_path / "x.npy")}, "model": model,
                                 "output": {"path": str(tmp_path / "out"), "report": True}})
    return run_job(spec, client=client), tmp_path / "out"


def test_report_of_a_sweep(client, tmp_path):
    metrics, out = _run(client, tmp_path, {"n_components": "1..4",
                                           "covariance_type": ["full", "diag"]})
    assert metrics["report"] == ["report.html", "report/convergence.png",
                                 "report/selection.png", "report/weights.png",
                                 "report/projection.png"]
    for name in metrics["report"][1:]:
        assert (out / name).read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "src=\"http" not in page  # nothing fetched from elsewhere


def test_report_of_one_fit(client, tmp_path):
    metrics, out = _run(client, tmp_path, {"n_components": 3})
    assert "report/selection.png" not in metrics["report"]
    assert (out / "report" / "projection.png").read_bytes().startswith(PNG)
