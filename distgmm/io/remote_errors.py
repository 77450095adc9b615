"""Object-store failures as exit classes: the user's to fix (2) or worth a retry (75).

botocore, aiobotocore, aiohttp and s3fs raise their own exception types, and s3fs turns
some of them into ``PermissionError``/``FileNotFoundError``/``OSError`` with the original
as ``__cause__``. :func:`classify_remote_error` walks that chain and answers with an
exit code and one line naming the location and the fix, or None for anything that is
not an object-store failure. Nothing here imports botocore: classes are matched by
name, so the module costs nothing where s3fs is not installed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

EXIT_BAD_INPUT, EXIT_RETRYABLE = 2, 75

_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                "NoAuthTokenError", "UnauthorizedSSOTokenError", "TokenRetrievalError"}
_DENIED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                 "Forbidden", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
                 "AllAccessDisabled", "AuthorizationHeaderMalformed", "InvalidClientTokenId",
                 "UnrecognizedClientException", "AccountProblem"}
_NO_BUCKET_CODES = {"NoSuchBucket"}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                "ServiceUnavailable", "503", "500", "502", "504", "Throttling",
                "ThrottlingException", "RequestLimitExceeded"}
# connection-level failures: a retry (later, or once the endpoint is back) can fix them
_NETWORK = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
            "ConnectionClosedError", "ProxyConnectionError", "HTTPClientError",
            "ClientConnectorError", "ClientConnectionError", "ServerDisconnectedError",
            "ServerTimeoutError", "ClientOSError", "ClientPayloadError",
            "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
            "BrokenPipeError", "TimeoutError", "FSTimeoutError", "IncompleteRead"}
_REMOTE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "urllib3")


def _chain(exc: BaseException):
    """``exc`` and its causes/contexts, outermost first, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _bad_option(exc: BaseException) -> bool:
    """A keyword the filesystem's constructor refused (a storage option misspelt)."""
    if not (isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc)):
        return False
    tb, modules = exc.__traceback__, set()
    while tb is not None:
        modules.add(tb.tb_frame.f_globals.get("__name__", "").split(".")[0])
        tb = tb.tb_next
    return bool(modules & {"fsspec", *_REMOTE_MODULES})


def _is_remote(exc: BaseException) -> bool:
    return any(type(e).__module__.split(".")[0] in _REMOTE_MODULES for e in _chain(exc))


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = error.get("Code")
        if code is None:
            code = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return None if code is None else str(code)
    return None


def _request_url(endpoint: str) -> str:
    """``http://host/bucket/key?...prefix=p%2F`` -> ``s3://bucket/key`` (or ``/p``)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(endpoint)
    path = parts.path.strip("/")
    if not path:
        return endpoint
    prefix = (parse_qs(parts.query).get("prefix") or [""])[0].rstrip("/")
    return f"s3://{path}/{prefix}" if prefix and "/" not in path else f"s3://{path}"


def _location(chain: list, urls: Sequence[str]) -> str:
    """The object named by the error (bucket/key from the request), else the URLs the
    command was given."""
    for e in chain:
        kwargs = getattr(e, "kwargs", None) or {}
        endpoint = kwargs.get("endpoint_url")
        if endpoint:
            return _request_url(str(endpoint))
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            bucket = (response.get("Error") or {}).get("BucketName")
            if bucket:
                return f"s3://{bucket}"
    remote = [u for u in urls if u and "://" in u]
    return " / ".join(dict.fromkeys(remote)) or "the object store"


def _endpoint(chain: list) -> str:
    for e in chain:
        kwargs = getattr(e, "kwargs", None) or {}
        if kwargs.get("endpoint_url"):
            m = re.match(r"^([a-z]+://[^/]+)", str(kwargs["endpoint_url"]))
            return m.group(1) if m else str(kwargs["endpoint_url"])
    return ""


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


_CRED_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass "
             "--storage-option key=... --storage-option secret=... (storage_options in a "
             "job spec); --storage-option anon=true for public buckets")


def classify_remote_error(exc: BaseException,
                          urls: Sequence[str] = ()) -> tuple[int, str] | None:
    """Exit code and one line for an object-store failure, else None.

    Parameters
    ----------
    exc : BaseException
        What the command raised (an s3fs translation keeps the original as its cause).
    urls : sequence of str
        The locations the command was given, named when the error does not say which
        object it was about.

    Returns
    -------
    (int, str) or None
        ``(2, ...)`` for missing or wrong credentials, access denied and a bucket that
        does not exist; ``(75, ...)`` for an unreachable endpoint, timeouts, connection
        resets and throttling; None when ``exc`` did not come from an object store.
    """
    if _bad_option(exc):
        return EXIT_BAD_INPUT, (f"a storage option for {_location([], urls)} is not one "
                                f"the filesystem takes ({_text(exc)}): fix or drop that "
                                "--storage-option (storage_options in a job spec).")
    if not _is_remote(exc):
        return None
    chain = list(_chain(exc))
    where = _location(chain, urls)
    for e in chain:
        names, code = _names(e), _code(e)
        if names & _CREDENTIALS:
            return EXIT_BAD_INPUT, (f"no usable credentials for {where} ({_text(e)}): "
                                    f"{_CRED_FIX}.")
        if code in _DENIED_CODES:
            return EXIT_BAD_INPUT, (f"access to {where} denied ({code}: {_text(e)}): check "
                                    f"the credentials and their permissions; {_CRED_FIX}.")
        if code in _NO_BUCKET_CODES:
            return EXIT_BAD_INPUT, (f"no such bucket for {where}: check the URL's bucket "
                                    "name and the endpoint (AWS_ENDPOINT_URL or "
                                    "--storage-option endpoint_url=...).")
        if code in _RETRY_CODES or names & _NETWORK:
            endpoint = _endpoint(chain)
            at = f" at {endpoint}" if endpoint else ""
            return EXIT_RETRYABLE, (f"object store{at} unreachable or not answering while "
                                    f"accessing {where} ({type(e).__name__}: {_text(e)}); "
                                    "rerunning is safe once it answers (check "
                                    "AWS_ENDPOINT_URL / endpoint_url if it persists).")
    if isinstance(exc, PermissionError):
        return EXIT_BAD_INPUT, (f"access to {where} denied ({_text(exc)}): check the "
                                f"credentials and their permissions; {_CRED_FIX}.")
    return None
