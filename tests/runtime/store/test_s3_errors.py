"""The S3 store's error classification, on ClientErrors shaped as botocore builds them
from S3's documented error responses (docs.aws.amazon.com/AmazonS3/latest/API/
ErrorResponses.html: code, message, HTTP status)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from lambdaflow.errors import BackendError, ConfigError
from lambdaflow.runtime.store.s3_errors import TRANSIENT, permanent

URL = "s3://b/p/k"


def _error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")  # fmt: skip


@pytest.mark.parametrize("code,status", [
    ("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503),
    ("RequestTimeout", 400), ("ConditionalRequestConflict", 409), ("", 502),
])  # fmt: skip
def test_what_s3_says_to_retry_is_retried(code, status):
    assert permanent("PutObject", "b", URL, None, _error(code, status)) is None


def test_a_missing_bucket_names_it_and_how_to_create_it():
    err = permanent("PutObject", "b", URL, "http://127.0.0.1:5000", _error("NoSuchBucket", 404))
    assert isinstance(err, ConfigError)
    assert "'b' does not exist at http://127.0.0.1:5000" in str(err)
    assert "aws s3 mb s3://b" in str(err)


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"])
def test_rejected_credentials_say_to_configure_them(code):
    err = permanent("GetObject", "b", URL, None, _error(code, 403))
    assert isinstance(err, ConfigError) and "aws configure" in str(err)


def test_access_denied_names_the_operation_the_object_and_the_actions():
    err = permanent("GetObject", "b", URL, None, _error("AccessDenied", 403, "Access Denied"))
    assert isinstance(err, ConfigError)
    assert "GetObject s3://b/p/k" in str(err) and "s3:ListBucket" in str(err)


def test_another_client_error_is_a_backend_error_with_aws_message():
    err = permanent("PutObject", "b", URL, None,
                    _error("InvalidArgument", 400, "Invalid argument."))
    assert isinstance(err, BackendError) and not isinstance(err, ConfigError)
    assert str(err) == "S3 PutObject s3://b/p/k failed: InvalidArgument: Invalid argument."


def test_connection_level_failures_are_transient():
    from botocore import exceptions as bx

    assert issubclass(bx.EndpointConnectionError, TRANSIENT)
    assert issubclass(bx.ReadTimeoutError, TRANSIENT)
