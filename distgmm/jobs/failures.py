"""How a failed run ends: a table of classifiers turning an exception into an exit code
and one line for the operator.

Exit codes (sysexits-style, so orchestrators can tell a retry from a fix):

==== =====================================================================================
0    done, or already published by the same job, or the same job is running elsewhere
2    bad input, options or spec (the user's to fix; nothing written)
74   I/O error on a read or write (disk full, read-only, permission, quota: EX_IOERR)
75   retryable cluster failure (scheduler lost, workers gone, stalled: EX_TEMPFAIL)
78   memory sizing: workers paused or killed by memory; a retry fails the same way until
     the chunk size, the worker memory or the cache changes (EX_CONFIG)
130  interrupted (SIGINT)
143  terminated (SIGTERM)
==== =====================================================================================

Each classifier takes an exception and returns a :class:`Failure` or ``None``; the first
one that answers wins, for the exception and then for its causes. To teach distgmm a new
kind of failure, append one function to :data:`CLASSIFIERS`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import NamedTuple

EXIT_OK, EXIT_BAD_INPUT, EXIT_IO, EXIT_TRANSIENT, EXIT_MEMORY = 0, 2, 74, 75, 78
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

MEMORY_KNOBS = ("lower --chunk-size (input.chunk_size), give the workers more memory "
                "(--memory-limit / dask worker --memory-limit), or keep the data out of "
                "memory with --cache none")


class Failure(NamedTuple):
    """An exit code and the one line that explains it."""

    code: int
    message: str


class MemorySizingError(RuntimeError):
    """Workers cannot hold the work they are given: a retry fails the same way."""


class ClusterStalled(ConnectionError):
    """No task of a pass finished for the stall timeout (retryable)."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def memory_failure(exc: BaseException) -> Failure | None:
    """Memory sizing errors (detected by the watchdog or from a KilledWorker)."""
    if isinstance(exc, MemorySizingError):
        return Failure(EXIT_MEMORY, _one_line(exc))
    return None


def interrupted(exc: BaseException) -> Failure | None:
    """SIGINT (130) and SIGTERM (143): the run was stopped, staging cleaned."""
    import signal

    if not isinstance(exc, KeyboardInterrupt):
        return None
    signum = getattr(exc, "signum", signal.SIGINT)
    if signum == signal.SIGTERM:
        return Failure(EXIT_SIGTERM, "terminated (SIGTERM): the run was cancelled and its "
                       "staging removed; rerunning resumes from the checkpoint")
    return Failure(EXIT_SIGINT, "interrupted (SIGINT): the run was cancelled and its "
                   "staging removed; rerunning resumes from the checkpoint")


def _transient_types() -> tuple:
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (CommClosedError, KilledWorker, FutureCancelledError, TimeoutError,
            ConnectionError)


def transient(exc: BaseException) -> Failure | None:
    """Cluster failures a rerun can fix (it resumes from the checkpoint)."""
    if not isinstance(exc, _transient_types()):
        return None
    from .cluster import ClusterUnavailable

    text = _one_line(exc)
    if isinstance(exc, (ClusterUnavailable, ClusterStalled)):
        return Failure(EXIT_TRANSIENT, text)
    return Failure(EXIT_TRANSIENT, f"cluster failure ({type(exc).__name__}: {text}); "
                   "rerunning is safe, it resumes where possible")


_IO_CAUSES = {
    errno.ENOSPC: "no space left on the device (or no free inodes): free space there or "
                  "write elsewhere",
    errno.EROFS: "the filesystem is read-only: write the output somewhere writable",
    errno.EACCES: "permission denied: check the permissions of that path for the user "
                  "running distgmm",
    errno.EPERM: "operation not permitted: check the permissions of that path",
    errno.EDQUOT: "disk quota exceeded: free space under your quota or write elsewhere",
    errno.EIO: "the device reported an I/O error: check the disk or the mount",
    errno.EMFILE: "too many open files: raise the open-file limit (ulimit -n)",
    errno.EFBIG: "file too large for that filesystem",
}


def os_error(exc: BaseException) -> Failure | None:
    """Disk full, read-only, permissions, quota: exit 74 naming the path and cause."""
    if not isinstance(exc, OSError) or exc.errno not in _IO_CAUSES:
        return None
    path = exc.filename if exc.filename is not None else "(path not reported by the OS)"
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return Failure(EXIT_IO, f"I/O error on {path}: {_IO_CAUSES[exc.errno]} [{name}]")


# ImportError: an optional filesystem (s3fs, gcsfs) is missing for the URL given
_BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
              IsADirectoryError, PermissionError, ImportError)


def bad_input(exc: BaseException) -> Failure | None:
    """The user's input, options or spec: exit 2."""
    if isinstance(exc, ImportError):
        if (exc.name or "").startswith("distgmm"):
            return None  # a broken install (a kernel built from other sources)
        return Failure(EXIT_BAD_INPUT, f"{_one_line(exc)}: install the filesystem for that "
                       "URL (pip install 'distgmm[cloud]' for s3:// and gs://)")
    if isinstance(exc, _BAD_INPUT):
        return Failure(EXIT_BAD_INPUT, _one_line(exc))
    return None


def already_running(exc: BaseException) -> Failure | None:
    """The same job runs elsewhere and still holds its lease, or already published its
    output: nothing to do, exit 0."""
    from ..io.publish import AlreadyPublished
    from .lease import AlreadyRunning

    done = isinstance(exc, (AlreadyRunning, AlreadyPublished))
    return Failure(EXIT_OK, _one_line(exc)) if done else None


#: Tried in order on the exception, then on its cause/context chain.
CLASSIFIERS: list[Callable[[BaseException], Failure | None]] = [
    memory_failure,
    already_running,
    interrupted,
    transient,
    os_error,
    bad_input,
]


def chain(exc: BaseException):
    """``exc`` and its causes (and unsuppressed contexts), outermost first, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def classify(exc: BaseException) -> Failure | None:
    """The failure class of ``exc``; ``None`` for an unexpected error (a bug: traceback).

    Classifiers are tried in table order, each on the whole cause chain.
    """
    links = list(chain(exc))
    for classifier in CLASSIFIERS:  # a disk-full error wrapped in a ValueError is I/O
        for link in links:
            failure = classifier(link)
            if failure is not None:
                return failure
    return None


@contextlib.contextmanager
def io_path(path: str):
    """Name ``path`` in OS errors raised inside that do not name a file themselves."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno in _IO_CAUSES:
            e.filename = os.fspath(path)
        raise
