"""Build of the compiled E-step kernel; all other metadata lives in pyproject.toml.

``_estep.c`` is compiled twice on x86-64: ``_estep`` for any CPU and ``_estep_avx2``
with AVX2 and FMA, which ``distgmm.numerics.suffstats`` imports when the CPU has them.

``_estep`` is REQUIRED: it is most of distgmm's speed, so where it cannot be built (no
C compiler, no Python headers, or MSVC, which lacks the GCC/Clang vector extensions the
kernel is written in) the build stops with a message saying why and what to do. Set
``DISTGMM_NO_COMPILED_KERNEL=1`` to install without it on purpose: fits then run on the
numpy kernel (about half the speed), warn once at the first fit, and ``distgmm info
--system`` says so. ``_estep_avx2`` is optional: where the compiler cannot target AVX2
the build goes on with a warning, and the generic ``_estep`` runs on every CPU.
"""

import os
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

SOURCE = ["distgmm/numerics/_estep.c"]
KERNEL = "distgmm.numerics._estep"
KERNEL_AVX2 = "distgmm.numerics._estep_avx2"
OPT_OUT = "DISTGMM_NO_COMPILED_KERNEL"
# GCC/Clang: -O3 for the vectoriser, -Wno-psabi for the note that 32-byte vectors
# change the ABI of functions that are all inlined anyway
GCC_ARGS = ["-O3", "-Wno-psabi"]
_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


def kernel_build_error(why: str) -> str:
    """The one-paragraph message of a build that cannot compile the kernel."""
    return (
        f"distgmm cannot build its compiled E-step kernel ({KERNEL}, from {SOURCE[0]}): "
        f"{why}. The kernel is most of distgmm's speed (without it every fit runs on "
        "numpy at about half the speed), so the build stops instead of installing "
        "without it. Fix: build with GCC or Clang and the Python development headers "
        "installed (Debian/Ubuntu: apt install gcc python3-dev; macOS: xcode-select "
        "--install; Windows: build under WSL, or with a MinGW-w64 or Clang toolchain, "
        "as MSVC cannot compile the kernel's GCC/Clang vector extensions), or point CC "
        f"at a working compiler. To install without the kernel anyway, set {OPT_OUT}=1: "
        "fits then warn at the first fit and `distgmm info --system` reports the numpy "
        "kernel."
    )


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT, "").strip().lower() in ("1", "true", "yes", "on")


class BuildExt(build_ext):
    """``build_ext`` that fails clearly where the kernel cannot be built (see above)."""

    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        if compiler_type == "msvc":
            raise PlatformError(kernel_build_error(
                "the compiler is MSVC, which lacks the GCC/Clang vector extensions "
                "(__attribute__((vector_size))) the kernel is written in"))
        for ext in self.extensions:
            ext.extra_compile_args = [*GCC_ARGS, *ext.extra_compile_args]
        super().build_extensions()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as e:
            if ext.name == KERNEL_AVX2:  # optional: the generic build runs everywhere
                self.warn(f"not building {KERNEL_AVX2} (the compiler cannot target "
                          f"AVX2 + FMA: {e}); {KERNEL} runs on every CPU, a little slower")
                return
            raise CompileError(kernel_build_error(f"{type(e).__name__}: {e}")) from e


extensions = [Extension(KERNEL, SOURCE)]
if platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(Extension(
        KERNEL_AVX2, SOURCE, define_macros=[("ESTEP_MODULE", "_estep_avx2")],
        extra_compile_args=["-mavx2", "-mfma"],
    ))
if _opted_out():
    print(f"{OPT_OUT} is set: building distgmm WITHOUT its compiled E-step kernel; fits "
          "run on numpy at about half the speed and warn at the first fit.")
    extensions = []

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
