"""The benchmark scripts run end to end at a smoke size (timings are not asserted)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_smoke(tmp_path):
    compare = load("compare")
    out = tmp_path / "compare"
    assert compare.main(["--case", "smoke", "--n1", "1", "--n2", "2", "--no-spark",
                         "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["gemm_gflops"] > 0
    assert [r["covariance_type"] for r in doc["rows"]] == list(compare.TYPES)
    for r in doc["rows"]:
        assert r["sklearn"] > 0 and r["distgmm"] > 0 and r["distgmm_inprocess"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| smoke | full |" in table and "GFLOP/s" in table


def test_compare_flop_count_matches_the_issue():
    compare = load("compare")
    assert compare.full_gflop(1_000_000, 16, 8) == pytest.approx(8.7, abs=0.05)
    assert compare.full_gflop(200_000, 50, 10) == pytest.approx(20.4, abs=0.05)


def test_scaling_smoke(tmp_path):
    scaling = load("scaling")
    out = tmp_path / "scaling"
    assert scaling.main(["--rows", "20000", "--features", "3", "--components", "2",
                         "--n1", "1", "--n2", "2", "--workdir", str(tmp_path),
                         "--out", str(out)]) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())
    assert row["n"] == 20000 and row["read_s"] > 0 and row["peak_worker_mib"] > 100
    assert row["idle_worker_mib"] <= row["peak_worker_mib"]
    assert row["ratio"] == pytest.approx(
        row["ooc_s_per_iter"] / (row["mem_s_per_iter"] + row["read_s"]))


def test_scale_smoke(tmp_path):
    import signal

    scale = load("scale")
    out = tmp_path / "scale"
    before = signal.getsignal(signal.SIGTERM)
    scale.main(["--workers", "2", "--chunks", "30", "--n1", "0", "--n2", "6",
                "--out", str(out)])
    assert signal.getsignal(signal.SIGTERM) is before  # its handler is the script's only
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["chunks"] for r in rows] == [30]
    for r in rows:
        assert r["workers"] == 2
        assert all(r[k] > 0 for k in ("persisted_s", "user_persisted_s", "dask_floor_s",
                                      "out_of_core_s", "raw_read_s"))


def test_chunking_smoke(tmp_path):
    chunking = load("chunking")
    out = tmp_path / "chunking"
    chunking.main(["--n", "4000", "--d", "3", "--k", "2", "--rows", "1000", "--rows",
                   "250", "--n1", "0", "--n2", "2", "--timed-iters", "2", "--model-iters", "1",
                   "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [(r["rows_per_chunk"], r["chunks"]) for r in rows] == [(1000, 4), (250, 16)]
    for r in rows:
        assert all(r[k] > 0 for k in ("persisted_s", "out_of_core_s", "raw_read_s",
                                      "model_memory_s", "model_none_s"))


def test_parquet_layouts_smoke(tmp_path):
    layouts = load("parquet_layouts")
    out = tmp_path / "layouts"
    layouts.main(["--n", "1000", "--d", "3", "--k", "2", "--n1", "0", "--n2", "2",
                  "--timed-iters", "2", "--model-iters", "1", "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["layout"] for r in rows] == ["1 file, 1 row group", "1 file, 2 row groups of 500",
                                           "2 files of 500 rows", "1 files of 50,000 rows"]
    for r in rows:
        assert all(r[k] > 0 for k in ("load_s", "raw_read_s", "persisted_s", "out_of_core_s",
                                      "model_memory_s", "model_none_s"))


def test_small_files_smoke(tmp_path):
    small_files = load("small_files")
    out = tmp_path / "small"
    small_files.main(["--n", "2000", "--d", "3", "--k", "2", "--small", "500", "--big",
                      "1000", "--n1", "1", "--n2", "2", "--reps", "1", "--no-cluster",
                      "--out", str(out)])
    r = json.loads(out.with_suffix(".json").read_text())
    names = list(r["decode_cpu_s"])
    assert r["files"] == 4 and names[0] == "4 files of 500 rows, as distgmm reads"
    assert names[-1] == "2 files of 1,000 rows, as distgmm reads"
    assert "4 files, arrow, footer already parsed" in names
    assert all(v > 0 for v in r["decode_cpu_s"].values()) and r["out_of_core_s"] == {}
    assert math.isfinite(r["arithmetic_cpu_s"]) and set(r["floor_s"]) == set(names)


def test_cpu_split_smoke(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # it imports compare.py, as when run as a script
    cpu_split = load("cpu_split")
    r = cpu_split.measure("smoke", "diag", 1, 2, chunks=4)
    assert set(r) == {"wall", "driver", "workers"} and len(r["workers"]) == 2
    assert all(map(math.isfinite, [r["wall"], r["driver"], *r["workers"]]))


def test_compare_start_is_the_same_every_run():
    import numpy as np

    compare = load("compare")
    X, means = compare.make_data(3000, 3, 3)
    a, _ = compare.start(X, means, "full")
    b, _ = compare.start(X, means, "full")
    np.testing.assert_array_equal(a["precisions_init"], b["precisions_init"])


def test_ab_iteration_smoke():
    # the same tree twice: both rows measured, the ratio column against the first
    root = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, str(BENCH / "ab_iteration.py"), root, root,
                          "--type", "diag", "--rounds", "1", "--rows", "16000"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith(f"| {root} |")]
    assert len(rows) == 2 and rows[0].endswith("| 1.000 |")
    median = float(rows[1].split("|")[4])
    assert median > 0


def test_ab_iteration_refuses_a_tree_it_did_not_import(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, str(BENCH / "ab_iteration.py"), str(tmp_path), root,
                          "--rounds", "1", "--rows", "16000"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "not this tree" in run.stderr
