"""Build of the compiled E-step kernel; all other metadata lives in pyproject.toml."""

import sys

from setuptools import Extension, setup

# GCC/Clang vector extensions; -O3 for the vectoriser, -Wno-psabi for the note that
# 32-byte vectors change the ABI of functions that are all inlined anyway
ARGS = [] if sys.platform == "win32" else ["-O3", "-Wno-psabi"]

setup(
    ext_modules=[
        Extension(
            "distgmm.numerics._estep",
            sources=["distgmm/numerics/_estep.c"],
            extra_compile_args=ARGS,
        )
    ]
)
