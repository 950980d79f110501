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
        └ recompute the signature over the signed headers, the raw path and query (with
          botocore's canonicalisation) and the body's SHA-256; compare in constant time

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


def _parse_amz_date(text: str) -> int:
    """``20250101T120000Z`` -> POSIX seconds (ValueError if malformed)."""
    if len(text) != 16 or text[8] != "T" or text[15] != "Z":
        raise ValueError(text)
    fields = (text[0:4], text[4:6], text[6:8], text[9:11], text[11:13], text[13:15])
    y, mo, d, h, mi, sec = (int(f) for f in fields)
    return calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))


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
        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self.region = region
        self.service = service
        self._keys: dict[str, Credential] = {}
        self._keys_by_day: dict[tuple[str, str], bytes] = {}
        #: botocore's signer, for its path and query canonicalisation only
        self._signer = SigV4Auth(Credentials("-", "-"), service, region)

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
            stamp = _parse_amz_date(amz_date)
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
        expected = self._signature(
            credential, method, target, headers, signed, body, declared, amz_date, date
        )
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise AuthError(403, "InvalidSignatureException", _INVALID_SIGNATURE)
        return credential

    def _signature(
        self,
        credential: Credential,
        method: str,
        target: str,
        headers: dict[str, str],
        signed: list[str],
        body: bytes,
        declared: str | None,
        amz_date: str,
        date: str,
    ) -> str:
        """SigV4 as botocore computes it for a non-S3 service: botocore's own path
        normalisation (segments encoded twice) and query canonicalisation, headers
        lower-cased with whitespace collapsed, the body's SHA-256; the signing key is
        cached per key and day (four of the five HMACs of a signature)."""
        from types import SimpleNamespace

        path = target.partition("?")[0]
        url = f"http://{headers['host']}{target}"
        canonical = "\n".join(
            [
                method.upper(),
                self._signer._normalize_url_path(path),
                self._signer.canonical_query_string(SimpleNamespace(url=url, params={})),
                "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in sorted(signed)),
                ";".join(sorted(signed)),
                declared or hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = self._signing_key(credential.secret_access_key, date)
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._keys_by_day.get((secret, date))
        if cached is None:
            key = ("AWS4" + secret).encode()
            for part in (date, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys_by_day) > 1024:
                self._keys_by_day.clear()
            cached = self._keys_by_day[(secret, date)] = key
        return cached
