"""AWS error codes, named once: what each kind of failure is called across the services
lambdaflow calls. ``deploy/errors.py`` (deploy, destroy, status) and
``runtime/store/s3_errors.py`` (the S3 store) both classify errors with these tables.

Nothing here imports botocore: the readers take any exception and look for the
``response`` dict a botocore ``ClientError`` carries.
"""

from __future__ import annotations

from typing import Any

#: "this resource does not exist", across the services deploy uses
NOT_FOUND = frozenset({
    "404", "NotFound", "NoSuchBucket", "NoSuchKey", "NoSuchTagSet", "NoSuchTagSetError",
    "NoSuchLifecycleConfiguration", "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError", "NoSuchBucketPolicy",
    "NoSuchEntity", "RepositoryNotFoundException", "ImageNotFoundException",
    "ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
})  # fmt: skip
#: an S3 object that is not there (GetObject / HeadObject; not a missing bucket)
MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
DENIED = frozenset({
    "403", "AccessDenied", "AccessDeniedException", "Forbidden", "UnauthorizedOperation",
    "AuthorizationError", "AllAccessDisabled",
})  # fmt: skip
BAD_CREDENTIALS = frozenset({
    "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "UnrecognizedClientException", "InvalidToken",
})  # fmt: skip
#: "try again later" (besides any HTTP status >= 500)
RETRYABLE = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
    "RequestTimeoutException", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "PriorRequestNotComplete",
    "ConditionalRequestConflict",  # 409: a concurrent conditional write; AWS says retry
})  # fmt: skip
#: what a conditional write (If-None-Match: *) answers when the key already exists
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})


def code(exc: BaseException | Any) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def status(exc: BaseException | Any) -> int | None:
    """The HTTP status of a botocore ClientError (None for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def message(exc: BaseException | Any) -> str:
    """AWS's own message of a ClientError ("" where there is none)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Message", ""))
