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

SUCCESS = "_SUCCESS"


def _fs(url: str, storage_options: dict | None):
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether anything is at ``url``."""
    fs, path = _fs(url, storage_options)
    return fs.exists(path)


def is_published(url: str, storage_options: dict | None = None) -> bool:
    """Whether ``url`` holds a complete output (its ``_SUCCESS`` marker exists)."""
    fs, path = _fs(url, storage_options)
    return fs.exists(posixpath.join(path, SUCCESS))


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

    Attributes
    ----------
    staging_url : str
        Where to write while inside the ``with`` block.
    """

    def __init__(self, url: str, *, overwrite: bool = False, marker: bool = True,
                 storage_options: dict | None = None):
        self.url, self.overwrite, self.marker = url, overwrite, marker
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

    def check(self) -> None:
        """Refuse an existing target unless overwriting."""
        if self.fs.exists(self.path) and not self.overwrite:
            raise FileExistsError(
                f"Output {self.url} already exists: pass --overwrite to replace it, or "
                "choose another output location."
            )

    def __enter__(self) -> Publication:
        self.check()
        self.fs.makedirs(self.staging, exist_ok=False)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._remove(self.staging)
            return False
        try:
            self._publish()
        except BaseException:
            self._remove(self.staging)
            raise
        return False

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
                           "files": files}, indent=1).encode()

    def _publish(self) -> None:
        self.check()
        manifest = self._manifest() if self.marker else None
        if self._local:
            import os

            if manifest is not None:
                self.fs.pipe_file(posixpath.join(self.staging, SUCCESS), manifest)
            had_old = os.path.exists(self.path)
            if had_old:
                os.rename(self.path, self._old)
            os.rename(self.staging, self.path)
            if had_old:
                self._remove(self._old)
            return
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        self.fs.copy(self.staging, self.path, recursive=True)
        self._remove(self.staging)
        if manifest is not None:
            self.fs.pipe_file(posixpath.join(self.path, SUCCESS), manifest)
