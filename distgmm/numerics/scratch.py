"""Per-thread scratch buffers, reused by every tile and every later chunk of a thread.

Dask workers run with ``MALLOC_TRIM_THRESHOLD_=65536``, under which every temporary
over ~128 KiB is a fresh ``mmap`` whose pages fault in on first touch; a kernel that
allocates per tile spends a large share of its time in the kernel (``sys`` time). The
kernels therefore write their tile temporaries into buffers from :func:`buffer`.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()
MAX_CACHED = 64


def cache() -> dict:
    """This thread's buffer cache (dropped whole when it grows past ``MAX_CACHED``)."""
    c = getattr(_local, "cache", None)
    if c is None or len(c) > MAX_CACHED:
        c = _local.cache = {}
    return c


def buffer(tag: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised array of ``shape`` in this thread's buffer for ``tag``.

    One buffer per tag and dtype, grown to the largest shape asked for, so ragged last
    tiles and changing numbers of centres reuse it. The caller owns its contents only
    until its next call with the same ``tag``; nothing may keep a reference to it.

    Parameters
    ----------
    tag : str
        What the buffer is for (buffers of different tags never alias).
    shape : tuple of int
    dtype : dtype, default float64

    Returns
    -------
    ndarray
        A C-contiguous view of the buffer.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    key = (tag, dtype.char)
    c = cache()
    buf = c.get(key)
    if buf is None or buf.size < size:
        buf = c[key] = np.empty(size, dtype)
    return buf[:size].reshape(shape)
