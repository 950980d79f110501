"""Execution-role credentials for the emulator's environments, from moto's STS.

Lambda "assumes the execution role" of a function and puts the session's keys into the
environment as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html).
CreateFunction already checks that the role can be assumed. The emulator does the
same against moto's STS, signed with the key of an IAM user that stands in for the
``lambda.amazonaws.com`` service principal (moto cannot sign as a service); the role's
trust policy names that user next to the service, so any other caller is refused.

    add_function(role) ──> RoleSessions.assume(role) ──> sts:AssumeRole (moto)
                              └> Credential(AKID, secret, token), accepted by the
                                 emulator's SigV4 verifier too (nested invokes)
    spawn ──> RoleSessions.fresh(credential): re-assume if under 5 minutes are left

moto then evaluates the role's policies on every request those keys sign.
"""

from __future__ import annotations

import time
from typing import Any

from lambdaflow.testing.sigv4 import Credential, SigV4Verifier

SESSION_SECONDS = 3600
REFRESH_BEFORE_S = 300


class RoleSessions:
    """AssumeRole calls against one STS endpoint with one (service) identity."""

    def __init__(self, endpoint_url: str, region: str, service: Credential) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.service = service
        self._client: Any = None
        self._expiry: dict[str, tuple[float, str, str]] = {}  # key -> (t, role, name)

    def _sts(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sts",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(retries={"total_max_attempts": 2}, connect_timeout=5,
                              read_timeout=15),
                **self.service.as_kwargs(),
            )  # fmt: skip
        return self._client

    def assume(self, role_arn: str, function_name: str) -> Credential:
        """The role's session keys; ValueError with Lambda's message if it cannot be
        assumed (no such role, or a trust policy that does not admit Lambda)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._sts().assume_role(
                RoleArn=role_arn,
                RoleSessionName=function_name[:64],
                DurationSeconds=SESSION_SECONDS,
            )
        except (ClientError, BotoCoreError) as exc:
            raise ValueError(
                f"The role defined for the function cannot be assumed by Lambda. "
                f"({role_arn}: {exc})"
            ) from None
        keys = resp["Credentials"]
        credential = Credential(
            keys["AccessKeyId"],
            keys["SecretAccessKey"],
            keys["SessionToken"],
            f"{role_arn}/{function_name}",
        )
        self._expiry[credential.access_key_id] = (
            time.monotonic() + SESSION_SECONDS, role_arn, function_name
        )
        return credential

    def fresh(
        self, credential: Credential | None, verifier: SigV4Verifier
    ) -> Credential | None:
        """``credential``, or a new session of the same role if it is about to expire."""
        if credential is None:
            return None
        entry = self._expiry.get(credential.access_key_id)
        if entry is None or entry[0] - time.monotonic() > REFRESH_BEFORE_S:
            return credential
        renewed = self.assume(entry[1], entry[2])
        verifier.add(renewed)  # the old key stays valid for environments still using it
        return renewed
