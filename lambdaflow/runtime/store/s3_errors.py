"""What the S3 store makes of a failed request: retry it, or raise the typed error that
names the bucket or object and what to do (the codes are ``aws_codes``'s tables).

    connection / timeout / body errors (TRANSIENT), 5xx, RETRYABLE codes  -> retry
    NoSuchBucket (or HeadBucket 404)                 -> ConfigError: create the bucket
    rejected credentials                             -> ConfigError: configure them
    AccessDenied / 403                               -> ConfigError: grant the actions
    any other 4xx                                    -> BackendError with AWS's message

A missing key is the store's own case (``ObjectLostError``, see ``S3Store``).
"""

from __future__ import annotations

from lambdaflow import aws
from lambdaflow.aws_codes import BAD_CREDENTIALS, RETRYABLE, code, message, status
from lambdaflow.errors import BackendError, ConfigError, LambdaflowError
from lambdaflow.runtime.store.s3_io import BodyError

try:
    from botocore import exceptions as bx
except ImportError:  # pragma: no cover - depends on the install; aws.client explains
    bx = None

#: Errors below the HTTP status line, all retried: connection refused / reset / closed,
#: connect and read timeouts, a body cut short or failing its checksum.
TRANSIENT: tuple[type[Exception], ...] = (BodyError,) + tuple(
    getattr(bx, name)
    for name in ("ConnectionError", "HTTPClientError", "IncompleteReadError",
                 "FlexibleChecksumError")
    if bx is not None and hasattr(bx, name)
)  # fmt: skip


def permanent(op: str, bucket: str, url: str, endpoint_url: str | None,
              exc: BaseException) -> LambdaflowError | None:
    """The typed error for a ClientError that retrying will not fix; None if a retry
    may (throttling, 5xx). ``url``: the object's s3:// address, for the message."""
    error_code, http = code(exc), status(exc)
    if error_code == "NoSuchBucket" or (op == "HeadBucket" and http == 404):
        custom = endpoint_url and not aws.is_aws_endpoint(endpoint_url)
        where = f" at {endpoint_url}" if custom else ""
        return ConfigError(
            f"S3 bucket {bucket!r} does not exist{where}: create it with "
            f"`lambdaflow deploy` or `aws s3 mb s3://{bucket}`"
        )
    if error_code in BAD_CREDENTIALS:
        return ConfigError(
            f"AWS rejected the credentials for s3://{bucket} ({error_code}): check "
            "AWS_PROFILE / AWS_ACCESS_KEY_ID or run `aws configure`"
        )
    if error_code in ("AccessDenied", "AllAccessDisabled") or http == 403:
        return ConfigError(
            f"access denied to s3://{bucket} for {op} {url} (S3 also says 403 for a "
            "missing key when s3:ListBucket is not granted): grant "
            "s3:GetObject/PutObject/DeleteObject/ListBucket on the bucket (the policy "
            "`lambdaflow deploy` creates does)"
        )
    if error_code not in RETRYABLE and not (http or 0) >= 500:
        return BackendError(f"S3 {op} {url} failed: {error_code or http}: {message(exc)}")
    return None
