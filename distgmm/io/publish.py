"""Atomic publication of an output directory: write to staging, then move into place.

Everything is written under a hidden staging directory next to the target. On success
``_SUCCESS`` is written last and the staging directory is renamed onto the target (one
atomic rename on a local filesystem; on object stores, where there is no rename, the
files are copied and ``_SUCCESS`` is written last at the target, so readers that wait
for ``_SUCCESS`` never see a partial output). On failure the staging directory is
removed and the target is untouched.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid

from .integrity import MAX_METRICS_BYTES, read_bounded

SUCCESS = "_SUCCESS"


def _fs(url: str, storage_options: dict | None):
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


PUBLISHING = "_PUBLISHING"


class AlreadyPublished(FileExistsError):
    """The target holds a complete output of the same job (another run published it)."""


def exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether anything is at ``url``."""
    fs, path = _fs(url, storage_options)
    return fs.exists(path)


def is_published(url: str, storage_options: dict | None = None) -> bool:
    """Whether ``url`` holds a complete output (its ``_SUCCESS`` marker exists)."""
    fs, path = _fs(url, storage_options)
    return fs.exists(posixpath.join(path, SUCCESS))


def _job_of(fs, path: str) -> str | None:
    """The job fingerprint an output (complete or not) says it belongs to."""
    for name, key in ((SUCCESS, ("job",)), (PUBLISHING, ("job",)),
                      ("metrics.json", ("job", "fingerprint"))):
        try:
            doc = json.loads(read_bounded(fs, posixpath.join(path, name), MAX_METRICS_BYTES))
        except (OSError, ValueError):
            continue
        for k in key:
            doc = doc.get(k) if isinstance(doc, dict) else None
        if isinstance(doc, str):
            return doc
    return None


def sweep_stale(url: str, storage_options: dict | None = None) -> list[str]:
    """Remove the staging and half-replaced directories interrupted runs left next to
    ``url`` (``.NAME.staging-*``, ``.NAME.old-*``).

    Only the run holding the job's lease may call this: a live run's staging has the
    same name pattern.
    """
    fs, path = _fs(url, storage_options)
    parent, name = posixpath.split(path.rstrip("/"))
    removed = []
    for pattern in (f".{name}.staging-*", f".{name}.old-*"):
        for stale in fs.glob(posixpath.join(parent, pattern)):
            try:
                fs.rm(stale, recursive=True)
                removed.append(stale)
            except FileNotFoundError:
                pass
    return removed


class Publication:
    """Context manager giving a staging location that becomes ``url`` on success.

    Parameters
    ----------
    url : str
        Final location (local path or fsspec URL).
    overwrite : bool
        Replace an existing target; otherwise an existing target is an error.
    marker : bool
        Write ``_SUCCESS`` (a small JSON manifest) last.
    storage_options : dict, optional
    job : str, optional
        The job's fingerprint: an unpublished output it left (no ``_SUCCESS``) is
        replaced without ``overwrite``, and a complete one it published raises
        :class:`AlreadyPublished` (also when another run wins the race to publish).

    Attributes
    ----------
    staging_url : str
        Where to write while inside the ``with`` block.
    """

    def __init__(self, url: str, *, overwrite: bool = False, marker: bool = True,
                 storage_options: dict | None = None, job: str | None = None):
        self.url, self.overwrite, self.marker, self.job = url, overwrite, marker, job
        self.fs, self.path = _fs(url, storage_options)
        self.path = self.path.rstrip("/")
        parent, name = posixpath.split(self.path)
        token = uuid.uuid4().hex[:12]
        self.staging = posixpath.join(parent, f".{name}.staging-{token}")
        self._old = posixpath.join(parent, f".{name}.old-{token}")
        self.staging_url = self._url(self.staging)

    def _url(self, path: str) -> str:
        return path if self._local else self.fs.unstrip_protocol(path)

    @property
    def _local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                          else (self.fs.protocol,))

    def target_state(self) -> str:
        """``absent``, ``ours`` / ``ours-partial`` (this job's, complete or not),
        ``other`` (anything else)."""
        if not self.fs.exists(self.path):
            return "absent"
        mine = self.job is not None and _job_of(self.fs, self.path) == self.job
        if not mine:
            return "other"
        return "ours" if self.fs.exists(posixpath.join(self.path, SUCCESS)) else "ours-partial"

    def check(self) -> str:
        """Refuse an existing target unless overwriting (or this job's partial output).

        Returns the target's state (see :meth:`target_state`).
        """
        state = self.target_state()
        if state == "ours" and not self.overwrite:
            raise AlreadyPublished(f"{self.url} is already published by this job")
        if state == "other" and not self.overwrite:
            raise FileExistsError(
                f"Output {self.url} already exists: pass --overwrite to replace it, or "
                "choose another output location."
            )
        return state

    def __enter__(self) -> Publication:
        from .interrupts import critical

        self.check()
        with critical():  # a signal between makedirs and the with block would leak it
            self.fs.makedirs(self.staging, exist_ok=False)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        try:
            self._publish()
        except BaseException:
            self._discard()
            raise
        return False

    def _discard(self, settle: float = 1.0) -> None:
        """Remove the staging directory, again if a write already under way when the
        run was interrupted (zarr's I/O thread, a cancelled task) recreates it."""
        self._remove(self.staging)
        if not self._local:
            return
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.1)
            self._remove(self.staging)

    def _remove(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except OSError:
            pass

    def _manifest(self) -> bytes:
        files = sorted(posixpath.relpath(p, self.staging)
                       for p in self.fs.find(self.staging))
        return json.dumps({"published": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "job": self.job, "files": files}, indent=1).encode()

    def _publish(self) -> None:
        from .interrupts import critical

        manifest = self._manifest() if self.marker else None
        with critical():  # a signal here would leave neither the old nor the new output
            self.check()
            if self._local:
                self._publish_local(manifest)
            else:
                self._publish_copy(manifest)

    def _publish_local(self, manifest: bytes | None) -> None:
        import errno
        import os

        if manifest is not None:
            self.fs.pipe_file(posixpath.join(self.staging, SUCCESS), manifest)
        had_old = os.path.exists(self.path)
        if had_old:
            os.rename(self.path, self._old)
        try:
            os.rename(self.staging, self.path)
        except OSError as e:  # another run published between our check and rename
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            self.check()
            raise
        if had_old:
            self._remove(self._old)

    def _publish_copy(self, manifest: bytes | None) -> None:
        """Object stores: no rename; mark the target as this job's, copy, ``_SUCCESS``."""
        if self.fs.exists(self.path):
            # the old marker first: a bulk delete is not atomic on an object store, and
            # a reader must never see _SUCCESS beside a half-deleted output
            marker = posixpath.join(self.path, SUCCESS)
            if self.fs.exists(marker):
                self.fs.rm(marker)
            self.fs.rm(self.path, recursive=True)
        if self.job is not None:
            self.fs.pipe_file(posixpath.join(self.path, PUBLISHING),
                              json.dumps({"job": self.job}).encode())
        for src in self.fs.find(self.staging):
            rel = posixpath.relpath(src, self.staging)
            self.fs.copy(src, posixpath.join(self.path, rel))
        self._remove(self.staging)
        if manifest is not None:
            self.fs.pipe_file(posixpath.join(self.path, SUCCESS), manifest)
        if self.job is not None:
            self._remove(posixpath.join(self.path, PUBLISHING))
