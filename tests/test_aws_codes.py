"""The AWS error-code readers work on real botocore errors and on anything else."""

from __future__ import annotations

from botocore.exceptions import ClientError

from lambdaflow import aws_codes
from lambdaflow.deploy import errors as deploy_errors


def test_readers_of_a_client_error():
    exc = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"},
                       "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject")
    assert (aws_codes.code(exc), aws_codes.status(exc), aws_codes.message(exc)) == (
        "NoSuchKey", 404, "gone")
    assert aws_codes.code(exc) in aws_codes.MISSING_KEY <= aws_codes.NOT_FOUND


def test_readers_of_anything_else():
    for exc in (ValueError("x"), OSError(5, "io")):
        assert (aws_codes.code(exc), aws_codes.status(exc), aws_codes.message(exc)) == (
            "", None, "")


def test_deploy_and_the_store_read_the_same_tables():
    assert deploy_errors.NOT_FOUND is aws_codes.NOT_FOUND
    assert deploy_errors.DENIED is aws_codes.DENIED
    assert deploy_errors.BAD_CREDENTIALS is aws_codes.BAD_CREDENTIALS
