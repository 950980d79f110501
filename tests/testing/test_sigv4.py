"""The emulator's SigV4 verifier against requests signed by botocore itself."""

from __future__ import annotations

import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambdaflow.testing.sigv4 import AuthError, Credential, SigV4Verifier

HOST = "127.0.0.1:9001"
ARN_PATH = (
    "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction"
    "%3Aworker/invocations"
)


def signed(cred: Credential, path: str = ARN_PATH, body: bytes = b'{"x": 1}',
           region: str = "us-east-1", extra: dict | None = None) -> dict:  # fmt: skip
    request = AWSRequest(method="POST", url=f"http://{HOST}{path}", data=body,
                         headers=extra or {})  # fmt: skip
    SigV4Auth(
        Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
        "lambda",
        region,
    ).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = HOST
    return headers


@pytest.fixture
def verifier():
    v = SigV4Verifier("us-east-1")
    v.add(KEY)
    v.add(SESSION)
    return v


KEY = Credential.generate("admin")
SESSION = Credential("ASIAEXAMPLEEXAMPLE01", "s" * 40, "token-1", "role")


def test_botocore_signatures_verify(verifier):
    body = b'{"x": 1}'
    assert verifier.verify("POST", ARN_PATH, signed(KEY), body) is KEY
    assert verifier.verify("POST", ARN_PATH, signed(SESSION), body) is SESSION
    query = "/2015-03-31/functions/?MaxItems=5&Marker=a%20b"
    assert verifier.verify("POST", query, signed(KEY, query), body) is KEY


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda h, b: ({k: v for k, v in h.items() if k != "authorization"}, b),
         "MissingAuthenticationTokenException"),
        (lambda h, b: (h, b + b" "), "InvalidSignatureException"),
        (lambda h, b: ({**h, "x-amz-security-token": "token-2"}, b),
         "UnrecognizedClientException"),
        (lambda h, b: ({**h, "x-amz-date": "20200101T000000Z"}, b),
         "InvalidSignatureException"),
    ],
    ids=["unsigned", "body-changed", "wrong-token", "date-changed"],
)  # fmt: skip
def test_tampered_requests_are_refused(verifier, mutate, code):
    headers, body = mutate(signed(SESSION), b'{"x": 1}')
    with pytest.raises(AuthError) as info:
        verifier.verify("POST", ARN_PATH, headers, body)
    assert (info.value.status, info.value.code) == (403, code)


def test_unknown_keys_other_scopes_and_old_signatures_are_refused(verifier):
    with pytest.raises(AuthError, match="security token"):
        verifier.verify("POST", ARN_PATH, signed(Credential.generate("x")), b'{"x": 1}')
    with pytest.raises(AuthError, match="scoped"):
        verifier.verify("POST", ARN_PATH, signed(KEY, region="eu-west-1"), b'{"x": 1}')
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(
            "POST", ARN_PATH, signed(KEY), b'{"x": 1}', now=time.time() + 16 * 60
        )
    verifier.discard(KEY.access_key_id)
    with pytest.raises(AuthError, match="security token"):
        verifier.verify("POST", ARN_PATH, signed(KEY), b'{"x": 1}')


def test_declared_payload_hash_must_match_the_body(verifier):
    import hashlib

    declared = {"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()}
    headers = signed(KEY, body=b"other", extra=declared)
    assert verifier.verify("POST", ARN_PATH, headers, b"other") is KEY
    with pytest.raises(AuthError, match="signature"):
        verifier.verify("POST", ARN_PATH, headers, b"swapped")
