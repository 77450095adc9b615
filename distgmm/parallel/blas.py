"""One BLAS thread while distgmm computes: parallelism comes from chunks, not from BLAS.

The kernels' GEMMs are skinny (``K`` rows); two BLAS threads on one of them gain
little, and OpenBLAS keeps its idle threads spinning for about 0.1 s after each
threaded call. On the driver, that spin followed every M-step and took a core from
the workers of a local cluster for a third of each iteration; in a process that runs
tasks in threads (the threaded scheduler, ``LocalCluster(processes=False)``), every
task thread also started its own BLAS threads. Dask's nanny already starts worker
processes with ``OPENBLAS_NUM_THREADS=1``; :func:`one_blas_thread` covers the rest.

The limit is process-wide (BLAS libraries hold one setting per process), so it is
reference-counted: the first thread to enter sets it, the last to leave restores the
user's setting, and threads entering and leaving in any order never restore it early.
The fit entry points enter it in the caller's thread, so in-process task threads find
it already set: OpenBLAS 0.3.31 ignores a change made from another thread once the
main thread has set a value.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_limiter = None
_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit every BLAS library of this process to one thread while inside.

    Safe to nest and to enter from several threads at once.
    """
    global _active, _limiter
    with _lock:
        if _active == 0:
            _limiter = _blas_controller().limit(limits=1, user_api="blas")
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _limiter.restore_original_limits()
                _limiter = None


def in_one_blas_thread(fn, *args):
    """``fn(*args)`` under :func:`one_blas_thread` (a task wrapper that pickles by name)."""
    with one_blas_thread():
        return fn(*args)
