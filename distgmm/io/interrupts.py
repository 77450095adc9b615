"""SIGINT and SIGTERM as one exception, and short sections they must not cut.

The CLI installs :func:`handle_signals`: both signals raise :class:`Interrupted` in the
main thread (SIGTERM is how Kubernetes and Slurm stop a job), so the same cleanup runs
(futures cancelled, staging removed). Inside :func:`critical` (the renames that publish
an output) a signal is held until the section ends.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

_pending: list[int] = []
_depth = [0]


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``: SIGINT or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# distributed.utils.sync() answers a KeyboardInterrupt by scheduling a cancel() that
# reads `future` before its coroutine may have assigned it, and tornado then logs a
# NameError traceback ("cannot access free variable 'future'") after the run's one-line
# error (distributed 2026.8; dask/distributed#5758 once handled the unassigned case).
# The run is ending: the loop's callback errors are of no use to the user then.
TORNADO_CALLBACKS = "tornado.application"


def _interrupted(signum: int) -> Interrupted:
    logging.getLogger(TORNADO_CALLBACKS).disabled = True  # see TORNADO_CALLBACKS
    return Interrupted(signum)


def _handler(signum, frame):
    if _depth[0] > 0:
        _pending.append(signum)
        return
    raise _interrupted(signum)


@contextlib.contextmanager
def handle_signals():
    """SIGINT and SIGTERM raise :class:`Interrupted` while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    callbacks = logging.getLogger(TORNADO_CALLBACKS)
    was_disabled = callbacks.disabled
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        callbacks.disabled = was_disabled


@contextlib.contextmanager
def critical():
    """Hold SIGINT/SIGTERM until the block ends, then raise the first one received."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0 and _pending:
            signum = _pending[0]
            _pending.clear()
            raise _interrupted(signum)
