"""SigV4 verification for the Lambda emulator: who sent this request?

Real Lambda refuses any request that is not signed with Signature Version 4 by a key
it knows (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html;
https://docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-troubleshooting.html).
The emulator does the same against the keys it was given for this run (the driver's)
and the keys it handed its execution environments (their role's STS session).

    Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/lambda/aws4_request,
                   SignedHeaders=host;x-amz-date, Signature=<hex>
        │ parse ──> key known? scope = this region + "lambda"? X-Amz-Date within 15 min?
        │           session token equal to the key's?
        └ recompute the signature with botocore's own SigV4Auth over the signed headers,
          the raw path and query and the body's SHA-256; compare in constant time

Errors are :class:`AuthError` with the status, the ``x-amzn-ErrorType`` and the message
Lambda answers with (403 ``MissingAuthenticationTokenException``,
``UnrecognizedClientException``, ``InvalidSignatureException``).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

#: SigV4 signatures are valid for 15 minutes after X-Amz-Date (AWS's documented window).
MAX_SKEW_S = 15 * 60
_ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credential:
    """One key the emulator accepts, and whose it is (for logs and stats)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    principal: str = ""

    @classmethod
    def generate(cls, principal: str) -> Credential:
        """A random key pair in AWS's shapes (AKIA + 16 characters, 40-character secret)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        return cls(key, secrets.token_urlsafe(30)[:40], None, principal)

    def as_kwargs(self) -> dict[str, str]:
        """``aws_access_key_id=...`` keyword arguments for boto3."""
        out = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        if self.session_token:
            out["aws_session_token"] = self.session_token
        return out


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_INVALID_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service "
    "documentation for details."
)


class SigV4Verifier:
    """The keys accepted for one service in one region; thread-confined to its owner."""

    def __init__(self, region: str, service: str = "lambda") -> None:
        self.region = region
        self.service = service
        self._keys: dict[str, Credential] = {}

    def add(self, credential: Credential) -> None:
        self._keys[credential.access_key_id] = credential

    def discard(self, access_key_id: str) -> None:
        self._keys.pop(access_key_id, None)

    def __len__(self) -> int:
        return len(self._keys)

    def verify(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        now: float | None = None,
    ) -> Credential:
        """The credential that signed this request (``headers`` lower-cased), or
        AuthError. ``target`` is the raw request target (path and query as received)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth = headers.get("authorization", "")
        if not auth:
            raise AuthError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        algorithm, _, rest = auth.partition(" ")
        fields = dict(
            part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part
        )
        scope = fields.get("Credential", "").split("/")
        signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
        if algorithm != _ALGORITHM or len(scope) != 5 or not signed:
            raise AuthError(
                400, "IncompleteSignatureException", f"Authorization header is not {_ALGORITHM}"
            )
        key_id, date, region, service, terminator = scope
        credential = self._keys.get(key_id)
        if credential is None:
            raise AuthError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if (region, service, terminator) != (self.region, self.service, "aws4_request"):
            raise AuthError(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region and service: "
                f"{self.region}/{self.service}, not {region}/{service}.",
            )
        amz_date = headers.get("x-amz-date", "")
        try:
            stamp = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            raise AuthError(403, "InvalidSignatureException", "X-Amz-Date is missing or malformed") from None
        if not amz_date.startswith(date) or "x-amz-date" not in signed:
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        if abs((time.time() if now is None else now) - stamp) > MAX_SKEW_S:
            raise AuthError(
                403,
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is outside the {MAX_SKEW_S // 60}-minute "
                "window of the server's time.",
            )
        token = headers.get("x-amz-security-token")
        if token != credential.session_token:
            raise AuthError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if credential.session_token and "x-amz-security-token" not in signed:
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared != hashlib.sha256(body).hexdigest():
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        missing = [h for h in signed if h not in headers]
        if missing:
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{target}",
            data=body,
            headers={h: headers[h] for h in signed},
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(
                credential.access_key_id,
                credential.secret_access_key,
                credential.session_token,
            ),
            service,
            region,
        )
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        return credential
