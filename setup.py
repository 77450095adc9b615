"""Build of the compiled E-step kernel; all other metadata lives in pyproject.toml.

``_estep.c`` is compiled twice on x86-64: ``_estep`` for any CPU and ``_estep_avx2``
with AVX2 and FMA, which ``distgmm.numerics.suffstats`` imports when the CPU has them.
Both are optional: without a C compiler the install goes on, and fits use the numpy
kernel (about half the speed) with a warning.
"""

import platform
import sys

from setuptools import Extension, setup

SOURCE = ["distgmm/numerics/_estep.c"]
# GCC/Clang vector extensions; -O3 for the vectoriser, -Wno-psabi for the note that
# 32-byte vectors change the ABI of functions that are all inlined anyway
ARGS = [] if sys.platform == "win32" else ["-O3", "-Wno-psabi"]

extensions = [
    Extension("distgmm.numerics._estep", SOURCE, extra_compile_args=ARGS, optional=True)
]
if sys.platform != "win32" and platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(Extension(
        "distgmm.numerics._estep_avx2", SOURCE,
        define_macros=[("ESTEP_MODULE", "_estep_avx2")],
        extra_compile_args=[*ARGS, "-mavx2", "-mfma"], optional=True,
    ))

setup(ext_modules=extensions)
