"""setup.py: a build that cannot compile the kernel stops with one clear message.

Each test runs ``setup.py build_ext`` in a temporary copy of the build inputs (setup.py,
pyproject.toml, README.md, _estep.c), so nothing of the checkout is touched.
"""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = ("distgmm cannot build its compiled E-step kernel (distgmm.numerics._estep, from "
           "distgmm/numerics/_estep.c)")
FIX = "To install without the kernel anyway, set DISTGMM_NO_COMPILED_KERNEL=1"


@pytest.fixture
def project(tmp_path):
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "distgmm" / "numerics").mkdir(parents=True)
    shutil.copy(ROOT / "distgmm" / "numerics" / "_estep.c", tmp_path / "distgmm" / "numerics")
    return tmp_path


def build(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CC", "LDSHARED", "DISTGMM_NO_COMPILED_KERNEL")}
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", "out", "--build-temp", "tmp",
         *args], cwd=project, env={**environ, **env}, capture_output=True, text=True,
        timeout=120)


def built(project: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (project / "out").rglob("_estep*"))


def test_a_compiler_that_fails_stops_the_build_with_the_fix(project):
    r = build(project, CC="/bin/false")
    assert r.returncode != 0
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {MESSAGE}: CompileError: command '/bin/false' failed")
    assert "apt install gcc python3-dev" in error and FIX in error
    assert built(project) == []


def test_msvc_is_refused_before_compiling(project):
    r = build(project, "--compiler=msvc")
    assert r.returncode != 0
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {MESSAGE}: the compiler is MSVC, which lacks the "
                            "GCC/Clang vector extensions")
    assert FIX in error


def test_the_opt_out_builds_without_the_kernel(project):
    r = build(project, CC="/bin/false", DISTGMM_NO_COMPILED_KERNEL="1")
    assert r.returncode == 0, r.stderr
    assert "DISTGMM_NO_COMPILED_KERNEL is set: building distgmm WITHOUT its compiled" in r.stdout
    assert built(project) == []


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or shutil.which("gcc") is None, reason="the AVX2 build is x86-64 only")
def test_the_avx2_build_is_optional(project):
    """A compiler that cannot target AVX2 still gives the generic kernel, with a warning."""
    cc = project / "cc-without-avx2"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -mavx2 ] && exit 1; done\n'
                  'exec gcc "$@"\n')
    cc.chmod(0o755)
    r = build(project, CC=str(cc))
    assert r.returncode == 0, r.stderr
    assert "not building distgmm.numerics._estep_avx2 (the compiler cannot target AVX2" in (
        r.stderr + r.stdout)
    assert built(project) == ["_estep"]
