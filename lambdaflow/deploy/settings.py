"""What a deployment is: its settings, the names derived from them, and its tags.

One deployment is identified by its ``name`` (default ``lambdaflow``). Every AWS resource
it owns carries the tag ``lambdaflow:deployment=<name>``; ``destroy`` removes only
resources with that tag, so resources made by hand under the same names are never touched.

Names derived from a deployment named ``N`` with memory tiers ``M1, M2, ...``::

    S3 bucket        settings.bucket (given; globally unique)
    IAM role         N-worker        inline policy  lambdaflow-worker
    ECR repository   N
    Lambda function  N-M1, N-M2 ...  one function per memory tier, the same image
    log group        /aws/lambda/N-M1 ...

The function of the first tier is the default ``LAMBDAFLOW_FUNCTION_NAME``.

Grants beyond the job prefix are given per resource and per kind of access, and only
what the code on the worker calls is granted (see ``iam.py`` for the actions):
``read_locations`` / ``write_locations`` (S3), ``dynamodb_read`` / ``dynamodb_write``,
``sqs_send`` (an on-failure destination) / ``sqs_consume`` (an SQS event source).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lambdaflow import limits, variants
from lambdaflow.errors import ConfigError
from lambdaflow.runtime.backends.tiers import (  # noqa: F401 - the naming lives there
    split_function_name,
    tier_function_name,
    tier_name,
)

TAG_KEY = "lambdaflow:deployment"
BUCKET_TAG_KEY = "lambdaflow:bucket"  # on the role: the bucket destroy removes
ENV_TAG_KEY = "lambdaflow:env"  # on each function: the --env keys deploy set last time
POLICY_NAME = "lambdaflow-worker"
DEFAULT_NAME = "lambdaflow"
DEFAULT_PREFIX = "lambdaflow/"
DEFAULT_TIERS = (1769, 3008, 10240)
DEFAULT_TIMEOUT_S = limits.MAX_TIMEOUT_S
DEFAULT_EXPIRE_DAYS = 7
DEFAULT_LOG_RETENTION_DAYS = 14
DEFAULT_EPHEMERAL_MB = limits.MIN_EPHEMERAL_MB
LIFECYCLE_RULE_ID = "lambdaflow-expire-job-objects"
#: CloudWatch Logs accepts only these retention values.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

#: DeploySettings fields that grant the worker access beyond the job prefix.
GRANT_FIELDS = (
    "read_locations", "write_locations", "dynamodb_read", "dynamodb_write",
    "sqs_send", "sqs_consume",
)  # fmt: skip

_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class DeploySettings:
    """Everything ``deploy`` creates follows from these values (checked on creation)."""

    bucket: str
    name: str = DEFAULT_NAME
    prefix: str = DEFAULT_PREFIX
    image_uri: str | None = None  # None: <ECR repository URI>:<version>-<variant>
    image_variant: str = ""  # "": the variant that matches this driver (variants.py)
    memory_tiers: tuple[int, ...] = DEFAULT_TIERS
    timeout_s: int = DEFAULT_TIMEOUT_S
    expire_days: int = DEFAULT_EXPIRE_DAYS
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    ephemeral_mb: int = DEFAULT_EPHEMERAL_MB
    read_locations: tuple[str, ...] = ()  # "bucket" or "bucket/prefix" readable inputs
    write_locations: tuple[str, ...] = ()  # "bucket" or "bucket/prefix" outputs
    dynamodb_read: tuple[str, ...] = ()  # table names or ARNs: GetItem / Query
    dynamodb_write: tuple[str, ...] = ()  # table names or ARNs: Put / Update / Delete
    sqs_send: tuple[str, ...] = ()  # queue names or ARNs: SendMessage (destinations)
    sqs_consume: tuple[str, ...] = ()  # queue names or ARNs: an SQS event source
    environment: dict[str, str] = field(
        default_factory=dict
    )  # extra function variables

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ConfigError(
                f"deployment name {self.name!r} is not valid: use 1-40 lowercase letters, "
                "digits and '-', starting with a letter (it names the role, ECR repository "
                "and functions), e.g. --name lambdaflow"
            )
        if not _BUCKET_RE.fullmatch(self.bucket or "") or ".." in self.bucket:
            raise ConfigError(
                f"bucket name {self.bucket!r} is not a valid S3 bucket name: use 3-63 "
                "lowercase letters, digits, '.' and '-' (e.g. --bucket my-lambdaflow-jobs)"
            )
        prefix = self.prefix.strip("/")
        if not prefix:
            raise ConfigError(
                "prefix is empty: the worker's access and the expiry rule are scoped to a "
                "key prefix, so give one, e.g. --prefix lambdaflow/"
            )
        object.__setattr__(self, "prefix", prefix + "/")
        tiers = tuple(sorted({int(m) for m in self.memory_tiers}))
        low, high = limits.MIN_MEMORY_MB, limits.MAX_MEMORY_MB
        if not tiers or any(not low <= m <= high for m in tiers):
            raise ConfigError(
                f"memory tiers {self.memory_tiers!r}: each must be {low}..{high} MB "
                "(e.g. --memory 1769,3008,10240)"
            )
        object.__setattr__(self, "memory_tiers", tiers)
        try:
            limits.check_timeout(self.timeout_s, "--timeout")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.expire_days < 1:
            raise ConfigError(
                f"--expire-days {self.expire_days}: must be at least 1 day"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"--log-retention-days {self.log_retention_days}: CloudWatch accepts only "
                f"{', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        if not limits.MIN_EPHEMERAL_MB <= self.ephemeral_mb <= limits.MAX_EPHEMERAL_MB:
            raise ConfigError(
                f"--ephemeral-mb {self.ephemeral_mb}: Lambda allows "
                f"{limits.MIN_EPHEMERAL_MB}..{limits.MAX_EPHEMERAL_MB}"
            )
        for key in self.environment:
            if key.startswith("AWS_"):
                raise ConfigError(
                    f"--env {key}: AWS_* variables are reserved by Lambda"
                )
            if key in self._own_environment(self.memory_tiers[0]):
                raise ConfigError(
                    f"--env {key}: deploy sets {key} itself (use the matching flag)"
                )
        variant = self.image_variant or variants.driver_variant().name
        object.__setattr__(self, "image_variant", variants.get_variant(variant).name)

    # -- derived names -------------------------------------------------------------------

    @property
    def role_name(self) -> str:
        return f"{self.name}-worker"

    @property
    def repository_name(self) -> str:
        return self.name

    def function_name(self, memory_mb: int) -> str:
        return tier_name(self.name, memory_mb)

    @property
    def function_names(self) -> list[str]:
        return [self.function_name(m) for m in self.memory_tiers]

    @property
    def default_function_name(self) -> str:
        return self.function_name(self.memory_tiers[0])

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}

    @property
    def variant(self) -> variants.Variant:
        return variants.get_variant(self.image_variant)

    def _own_environment(self, memory_mb: int) -> dict[str, str]:
        return {
            "LAMBDAFLOW_BUCKET": self.bucket,
            "LAMBDAFLOW_PREFIX": self.prefix,
            "LAMBDAFLOW_DEPLOYMENT": self.name,
            "LAMBDAFLOW_MEMORY_MB": str(memory_mb),
            # what a worker needs to invoke the deployment itself (nested tasks)
            "LAMBDAFLOW_FUNCTION_NAME": self.default_function_name,
            "LAMBDAFLOW_MEMORY_TIERS": self.tiers_text,
        }

    def function_environment(self, memory_mb: int) -> dict[str, str]:
        """The variables deploy owns on the function of tier ``memory_mb``."""
        return {**self._own_environment(memory_mb), **self.environment}

    @property
    def grants(self) -> dict[str, list[str]]:
        """The access given beyond the job prefix, by field (for the settings file)."""
        return {name: list(getattr(self, name)) for name in GRANT_FIELDS}

    @property
    def tiers_text(self) -> str:
        return ",".join(map(str, self.memory_tiers))


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"
