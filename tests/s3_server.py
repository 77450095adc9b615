"""An S3-compatible server (moto_server) on 127.0.0.1 for the tests, and its fixtures.

``s3_server`` (session): the server, its endpoint and credentials. ``s3`` (per test): a
fresh bucket on it, the environment variables that point boto/s3fs at it
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) set for the
test, and the equivalent s3fs ``storage_options``. Nothing talks to any other address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass

import pytest

KEY, SECRET = "distgmm-test-key", "distgmm-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port nobody listens on at the moment (on 127.0.0.1)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class S3Server:
    """A running moto_server."""

    endpoint: str
    process: subprocess.Popen

    def env(self) -> dict:
        """Environment variables that point botocore (and so s3fs) at this server."""
        return {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def storage_options(self, key: str = KEY, secret: str = SECRET) -> dict:
        """s3fs storage options for this server (no environment needed)."""
        return {"key": key, "secret": secret, "endpoint_url": self.endpoint}

    def fs(self, **extra):
        """A fresh s3fs filesystem on the server: no instance or listing cache."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options(), skip_instance_cache=True,
                                 use_listings_cache=False, **extra)


def start_server() -> S3Server:
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return S3Server(endpoint, proc)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not answer within 60 s")


@pytest.fixture(scope="session")
def s3_server():
    """moto_server on 127.0.0.1, one for the whole session."""
    server = start_server()
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()


@dataclass(frozen=True)
class S3Bucket:
    """A bucket of its own for one test."""

    server: S3Server
    bucket: str

    @property
    def env(self) -> dict:
        return self.server.env()

    @property
    def storage_options(self) -> dict:
        return self.server.storage_options()

    def url(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, *parts])

    def fs(self, **extra):
        return self.server.fs(**extra)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the session's moto_server; the AWS_* environment points at it."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3_server.fs().mkdir(bucket)
    yield S3Bucket(s3_server, bucket)
