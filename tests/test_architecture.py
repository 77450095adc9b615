"""The shape of the package: layers, light imports, short functions, one home for
Dask's private APIs. ARCHITECTURE.md describes what these tests hold."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "distgmm"
ROOT = PACKAGE.parent
MAX_LINES = 60  # lines of code in a function, docstring and comments aside


def test_import_linter_contracts_hold():
    # the contracts live in pyproject.toml: layers cli > jobs > selection > estimator
    # > io > parallel > numerics > options, numerics without dask or I/O libraries
    linter = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout and "Contracts: 3 kept" in run.stdout, run.stdout


def test_import_distgmm_is_light():
    code = ("import sys, distgmm; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'pydantic', 'dask', 'sklearn', "
            "'zarr', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_unpickling_zarr_rows_imports_no_pandas_or_pyarrow(tmp_path):
    # every out-of-core Zarr chunk task carries one: a fresh worker's first task would
    # import them (0.9 s here)
    import pickle

    import numpy as np
    import zarr

    from distgmm.io.zarr_rows import ZarrRows

    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=(4, 2), chunks=(2, 2),
                          dtype="f8")
    (tmp_path / "rows.pkl").write_bytes(pickle.dumps(ZarrRows(z, "x.zarr")))
    code = ("import pickle, sys; r = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "r[(slice(0, 4), slice(0, 2))]; "
            "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "rows.pkl")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert np.array_equal(pickle.loads((tmp_path / "rows.pkl").read_bytes())[
        (slice(0, 4), slice(0, 2))], z[:])


def test_opening_sources_does_not_load_the_compiled_kernel():
    code = ("import sys, distgmm.io.sources; "
            "print(sorted(m for m in sys.modules if 'suffstats' in m or '_estep' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_names_resolve_lazily():
    import distgmm

    for name in distgmm.__all__:
        assert getattr(distgmm, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        distgmm.nope  # noqa: B018


def test_lazy_numerics_still_reaches_its_submodules():
    code = ("import distgmm.numerics as n; "
            "print(n.suffstats.__name__, n.chunk_stats.__module__, hasattr(n, 'nope'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["distgmm.numerics.suffstats", "distgmm.numerics.suffstats",
                           "False"]
    # a submodule whose own import fails says why, not "no attribute"
    code = ("import sys; sys.modules['scipy'] = None; import distgmm.numerics as n; "
            "n.gaussian")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ModuleNotFoundError" in run.stderr and "scipy" in run.stderr, run.stderr


def test_a_source_tree_on_the_path_imports_without_being_installed(tmp_path):
    # workers given the code on PYTHONPATH have no package metadata for distgmm
    import shutil

    shutil.copytree(PACKAGE, tmp_path / "distgmm",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    code = ("import importlib.metadata as md, sys; "
            "md.version = lambda name: (_ for _ in ()).throw(md.PackageNotFoundError(name)); "
            "import distgmm; print(distgmm.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert out.strip() == "0+unknown"


def test_top_level_holds_only_the_facade_options_cli_and_stage_packages():
    modules = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    # bayesian.py: BayesianGaussianMixture, at the estimator layer above estimator.py
    # (it reuses GaussianMixture's engine; see the layers contract in pyproject.toml)
    assert modules == {"__init__.py", "__main__.py", "options.py", "estimator.py",
                       "bayesian.py", "selection.py", "cli.py"}
    assert packages == {"numerics", "parallel", "io", "jobs"}


def _code_lines(node, lines) -> int:
    body = node.body
    first = body[0]
    is_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
              and isinstance(first.value.value, str))
    start = first.end_lineno + 1 if is_doc else first.lineno
    if is_doc and len(body) == 1:
        return 0
    return sum(1 for line in lines[start - 1:node.end_lineno]
               if line.strip() and not line.strip().startswith("#"))


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, lines)
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert not long, "functions over 60 lines of code: " + ", ".join(long)


PRIVATE_DASK = re.compile(
    r"dask\._[a-z]|_task_spec|get_scheduler|\.state\.tasks|HighLevelGraph|highlevelgraph"
    r"|dask\.optimization|distributed\.[a-z_.]*\._[a-z]|\._meta\b")


def test_private_dask_apis_live_in_one_module():
    users = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                   if PRIVATE_DASK.search(p.read_text()))
    assert users == ["distgmm/parallel/_dask.py"]


PRIVATE_ZARR = re.compile(
    r"async_array|codec_pipeline|StorePath|\bimport zarrs|\bfrom zarrs|\bzarrs\.|sync_fs"
    r"|zarr\.core|from zarr import core")


def test_private_zarr_apis_live_in_one_module():
    users = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                   if PRIVATE_ZARR.search("\n".join(
                       line for line in p.read_text().splitlines()
                       if not line.lstrip().startswith("#"))))
    assert users == ["distgmm/io/_zarr.py"]


def test_choices_are_spelled_once():
    # a tuple/list/set literal of the covariance types anywhere but options.py is a
    # copy that can drift (docstrings and per-type dispatch dicts are fine)
    names = {"full", "tied", "diag", "spherical"}
    copies = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "options.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(values & names) >= 3:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert copies == []
