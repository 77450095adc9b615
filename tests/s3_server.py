"""An S3-compatible server (moto_server) on 127.0.0.1 for the tests, and its fixtures.

``s3_server`` (session): the server, its endpoint and credentials. ``s3`` (per test): a
fresh bucket on it, the environment variables that point boto/s3fs at it
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) set for the
test, and the equivalent s3fs ``storage_options``. Nothing talks to any other address.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass

import pytest

REGION = "us-east-1"
# moto checks signatures and permissions after this many requests: the three that
# create the test user, its policy and its access key
_SETUP_ACTIONS = 3


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
    key: str
    secret: str

    def env(self) -> dict:
        """Environment variables that point botocore (and so s3fs) at this server."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def storage_options(self, key: str | None = None, secret: str | None = None) -> dict:
        """s3fs storage options for this server (no environment needed)."""
        return {"key": key or self.key, "secret": secret or self.secret,
                "endpoint_url": self.endpoint}

    def fs(self, **extra):
        """A fresh s3fs filesystem on the server: no instance or listing cache."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options(), skip_instance_cache=True,
                                 use_listings_cache=False, **extra)


def _access_key(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed s3:* and its access key (moto's first, unchecked requests)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="distgmm")
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="distgmm", PolicyName="s3",
                        PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="distgmm")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def start_server() -> S3Server:
    """moto_server on a free port of 127.0.0.1, checking credentials like S3 does."""
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)}
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not answer within 60 s")
    return S3Server(endpoint, proc, *_access_key(endpoint))


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
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.fs().mkdir(bucket)
    yield S3Bucket(s3_server, bucket)
