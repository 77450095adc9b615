"""Object-store failures: one line, exit 2 for the user's to fix, 75 for a retry."""

import time

import botocore.exceptions as bx
import pytest
import s3fs.errors
from conftest import blobs, run_cli
from s3_server import free_port

from distgmm.cli import exit_code_for
from distgmm.io.remote_errors import classify_remote_error
from distgmm.jobs.storage import parse_storage_options

URL = "s3://lake/events"


def client_error(code, op="GetObject", status=403, **extra):
    return bx.ClientError({"Error": {"Code": code, "Message": f"{code} message", **extra},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def translated(err):
    """The error as s3fs raises it: a Python exception with the botocore one as cause."""
    return s3fs.errors.translate_boto_error(err)


@pytest.mark.parametrize("exc, code, words", [
    (bx.NoCredentialsError(), 2, "no usable credentials for s3://lake/events"),
    (bx.PartialCredentialsError(provider="explicit", cred_var="aws_access_key_id"), 2,
     "AWS_ACCESS_KEY_ID"),
    (translated(client_error("InvalidAccessKeyId")), 2, "access to s3://lake/events denied"),
    (translated(client_error("SignatureDoesNotMatch")), 2, "--storage-option key="),
    (translated(client_error("AccessDenied")), 2, "permissions"),
    (translated(client_error("NoSuchBucket", status=404, BucketName="nope")), 2,
     "no such bucket for s3://nope"),
    (bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/lake/x.zarr/zarr.json"), 75,
     "at http://127.0.0.1:9 unreachable or not answering while accessing s3://lake/x.zarr"),
    (bx.ConnectTimeoutError(endpoint_url="http://10.0.0.1/lake"), 75, "rerunning is safe"),
    (bx.ReadTimeoutError(endpoint_url="http://h/b/k"), 75, "ReadTimeoutError"),
    (translated(client_error("SlowDown", status=503)), 75, "rerunning is safe"),
])
def test_object_store_errors_are_classified(exc, code, words):
    got = classify_remote_error(exc, [URL])
    assert got is not None and got[0] == code
    assert words in got[1] and "\n" not in got[1]


def test_a_connection_reset_inside_a_remote_call_is_retryable():
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as e:
            raise bx.HTTPClientError(error=e) from e
    except bx.HTTPClientError as e:
        assert classify_remote_error(e, [URL])[0] == 75


@pytest.mark.parametrize("exc", [ValueError("bad"), FileNotFoundError("x"),
                                 ConnectionResetError("local socket"), KeyError("k"),
                                 translated(client_error("NoSuchKey", status=404))])
def test_other_errors_are_left_to_the_usual_classes(exc):
    assert classify_remote_error(exc, [URL]) is None
    if isinstance(exc, FileNotFoundError):
        assert exit_code_for(exc) == 2


def test_storage_options_parse_as_nested_scalars():
    got = parse_storage_options(["anon=true", "config_kwargs.connect_timeout=2",
                                 "config_kwargs.retries.max_attempts=1", "key=AKIA/x=y",
                                 "endpoint_url=http://127.0.0.1:9000", "requester_pays=no",
                                 "token=null", "list=[1, 2]"])
    assert got == {"anon": True, "key": "AKIA/x=y", "endpoint_url": "http://127.0.0.1:9000",
                   "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 1}},
                   "requester_pays": False, "token": None, "list": "[1, 2]"}
    for bad in (["novalue"], ["=x"], ["a..b=1"], ["a=1", "a.b=2"], ["a.b=1", "a=2"]):
        with pytest.raises(ValueError, match="--storage-option"):
            parse_storage_options(bad)


@pytest.fixture
def zarr_on_s3(s3):
    import zarr

    X = blobs(n=600, d=3, k=2, seed=1)[0]
    z = zarr.create_array(store=s3.url("x.zarr"), shape=X.shape, dtype="f8",
                          chunks=(300, 3), storage_options=s3.storage_options)
    z[:] = X
    return s3.url("x.zarr")


def test_wrong_credentials_exit_2_with_one_line_and_nothing_written(s3, zarr_on_s3, tmp_path):
    before = sorted(s3.fs().find(s3.bucket))
    for args, env in [
        ((), {"AWS_SECRET_ACCESS_KEY": "wrong"}),
        (("--storage-option", "key=AKIANOSUCHKEY0000000", "--storage-option", "secret=x"), {}),
    ]:
        proc = run_cli("fit", zarr_on_s3, "-k", 2, "-o", s3.url("out"), "-q",
                       *args, extra_env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("distgmm: error: access to s3://"), \
            proc.stderr
        assert "credentials" in lines[0]
    assert sorted(s3.fs().find(s3.bucket)) == before


def test_unreachable_endpoint_exits_75_with_one_line_fast(s3, zarr_on_s3, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    t0 = time.monotonic()
    proc = run_cli("fit", zarr_on_s3, "-k", 2, "-o", str(tmp_path / "out"), "-q",
                   "--storage-option", "config_kwargs.connect_timeout=1",
                   "--storage-option", "config_kwargs.retries.max_attempts=1",
                   extra_env={"AWS_ENDPOINT_URL": closed}, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 75, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"distgmm: error: object store at {closed} unreachable")
    assert "s3://" in lines[0] and "rerunning is safe" in lines[0]
    assert not (tmp_path / "out").exists()
    print(f"unreachable endpoint reported after {elapsed:.1f} s")


def test_an_endpoint_that_stops_answering_exits_75(tmp_path):
    """A server that accepts connections and never answers (a stalled S3 endpoint)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    np_path = tmp_path / "x.npy"
    import numpy as np

    np.save(np_path, blobs(n=300, d=2, k=2)[0])
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        # s3fs retries a read timeout 5 times per request on top of botocore's attempts:
        # a short read timeout keeps the ten waits short (the endpoint never answers)
        proc = run_cli("fit", np_path, "-k", 2, "-o", "s3://stalled/out", "-q",
                       "--storage-option", f"endpoint_url={endpoint}",
                       "--storage-option", "key=k", "--storage-option", "secret=s",
                       "--storage-option", "config_kwargs.read_timeout=0.2",
                       "--storage-option", "config_kwargs.retries.max_attempts=1",
                       timeout=120)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
    assert held, "the command never reached the stalled endpoint"
    assert proc.returncode == 75, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ReadTimeoutError" in lines[0], proc.stderr
    assert f"object store at {endpoint}" in lines[0] and "s3://stalled/out" in lines[0]


def test_a_storage_option_the_filesystem_does_not_take_is_bad_input(tmp_path):
    proc = run_cli("fit", "s3://bucket/x.zarr", "-k", 2, "-o", tmp_path / "out", "-q",
                   "--storage-option", "endpoint_url=http://127.0.0.1:9",
                   "--storage-option", "no_such_option=1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_option" in lines[0], proc.stderr
    assert "s3://bucket/x.zarr" in lines[0]
