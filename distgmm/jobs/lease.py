"""One run of a job at a time: a lease file with a heartbeat, next to the checkpoint.

The lease is a small JSON document (holder pid, host, token, heartbeat time, time to
live) written through fsspec, so it works on local disk and object stores alike. The
holder rewrites it every ``ttl / 4`` seconds; a lease whose heartbeat is older than its
``ttl``, or whose holder is a dead process on this host, has expired and is taken over.
A second run of the same job waits (bounded) for the first; if the holder is still
alive after the wait it exits 0 naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import threading
import time
import uuid

from ..io.integrity import MAX_METRICS_BYTES, read_bounded
from .events import Reporter

# seconds without a heartbeat before a lease expires (DISTGMM_LEASE_TTL overrides)
DEFAULT_TTL = float(os.environ.get("DISTGMM_LEASE_TTL", "30"))


class AlreadyRunning(RuntimeError):
    """The same job holds the lease in another live process (exit 0: nothing to do)."""


def lease_url(checkpoint_url: str) -> str:
    """The lease lives beside the job's checkpoint: ``.NAME.lease.json``."""
    return checkpoint_url.removesuffix(".checkpoint.json") + ".lease.json"


def _alive_here(doc: dict) -> bool:
    """False only when the holder is a process on this host that no longer exists."""
    if doc.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(doc.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def describe(doc: dict) -> str:
    age = time.time() - float(doc.get("heartbeat", 0))
    return (f"pid {doc.get('pid')} on {doc.get('host')} (started "
            f"{time.strftime('%H:%M:%S', time.localtime(doc.get('started', 0)))}, "
            f"heartbeat {age:.0f} s ago)")


class Lease:
    """The lease of one job.

    Parameters
    ----------
    url : str
        Path or fsspec URL of the lease document.
    job : str
        The job's fingerprint (written for the operator's benefit).
    ttl : float
        Seconds without a heartbeat after which the lease expires.
    storage_options : dict, optional
    """

    def __init__(self, url: str, job: str, ttl: float = DEFAULT_TTL,
                 storage_options: dict | None = None):
        import fsspec

        self.url, self.job, self.ttl = url, job, float(ttl)
        self.fs, self.path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def read(self) -> dict | None:
        """The lease document, None if there is none (or it is unreadable)."""
        try:
            doc = json.loads(read_bounded(self.fs, self.path, MAX_METRICS_BYTES))
        except (FileNotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def live_holder(self) -> dict | None:
        """The document of another live holder, None if the lease is free or expired."""
        doc = self.read()
        if doc is None or doc.get("token") == self.token:
            return None
        fresh = time.time() - float(doc.get("heartbeat", 0)) <= float(doc.get("ttl", 0))
        return doc if fresh and _alive_here(doc) else None

    def _doc(self) -> bytes:
        return json.dumps({"job": self.job, "pid": os.getpid(), "host": socket.gethostname(),
                           "token": self.token, "started": self.started,
                           "heartbeat": time.time(), "ttl": self.ttl}).encode()

    def _write(self, exclusive: bool = False) -> bool:
        """Write our document; with ``exclusive`` only if no lease file exists (local)."""
        data = self._doc()
        if not self._local:
            self.fs.pipe_file(self.path, data)
            return True
        parent = posixpath.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        if exclusive:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        tmp = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return True

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired; False while another run holds it."""
        if self.live_holder() is not None:
            return False
        if not self._write(exclusive=self.read() is None):
            return False
        if not self._local:  # last writer wins on object stores: read back after a beat
            time.sleep(0.5)
        doc = self.read()
        return doc is not None and doc.get("token") == self.token

    def acquire(self, wait: float, reporter: Reporter, every: float = 10.0) -> None:
        """Take the lease, waiting up to ``wait`` seconds for a live holder.

        Raises
        ------
        AlreadyRunning
            Another live run still holds it after ``wait`` seconds.
        """
        deadline, next_line = time.monotonic() + wait, 0.0
        while not self.try_acquire():
            holder = self.live_holder()
            if holder is None:
                continue  # released or expired between the two reads: try again
            now = time.monotonic()
            if now >= deadline:
                raise AlreadyRunning(
                    f"this job is already running ({describe(holder)}); nothing to do "
                    f"here (waited {wait:.0f} s; its lease is {self.url})")
            if now >= next_line:
                reporter.event("lease-wait", f"waiting for the run of this job that holds "
                               f"its lease: {describe(holder)}", holder=holder.get("pid"),
                               host=holder.get("host"))
                next_line = now + every
            time.sleep(min(1.0, max(0.05, deadline - now)))
        self._thread = threading.Thread(target=self._beat, name="distgmm-lease",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._write()
            except OSError:  # a full disk must not kill the run; the lease may expire
                pass

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        doc = self.read()
        if doc is not None and doc.get("token") == self.token:
            try:
                self.fs.rm(self.path)
            except FileNotFoundError:
                pass


def sweep_checkpoint_temps(checkpoint_url: str, storage_options: dict | None = None) -> list:
    """Remove temporary checkpoint files (``..NAME.checkpoint.json.<hex>``) that an
    interrupted save left; only the lease holder may call this."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(checkpoint_url, **(storage_options or {}))
    parent, name = posixpath.split(path)
    removed = []
    for stale in fs.glob(posixpath.join(parent, f".{name}.*")):
        with contextlib.suppress(FileNotFoundError):
            fs.rm(stale)
            removed.append(stale)
    return removed
