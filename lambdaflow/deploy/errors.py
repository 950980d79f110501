"""AWS errors of deploy / destroy / status, translated at one boundary.

Every AWS call of this package goes through one of two wrappers::

    lookup(lambda: iam.get_role(RoleName=n), "IAM role", n)   value, or None if absent
    call(lambda: iam.delete_role(RoleName=n), "IAM role", n)  value

``lookup`` answers None exactly for the codes in ``aws_codes.NOT_FOUND`` ("no such
resource"); both translate everything else with :func:`translate`:

* missing credentials, or credentials AWS rejects  -> ConfigError (configure them);
* ``AccessDenied`` & co.                            -> ConfigError naming the action,
  the resource and where the deploying user's policy is (docs/AWS.md, Permissions);
* any other ClientError                             -> BackendError naming the action,
  the resource and AWS's code and message.

The original botocore exception is the ``__cause__``. Retries are botocore's (standard
mode, see ``clients.py``); nothing here retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore import exceptions as bx

from lambdaflow.aws_codes import BAD_CREDENTIALS, DENIED, NOT_FOUND, code
from lambdaflow.errors import BackendError, ConfigError, LambdaflowError

__all__ = ["BAD_CREDENTIALS", "DENIED", "NOT_FOUND", "call", "code", "lookup", "translate"]

T = TypeVar("T")

def translate(exc: BaseException, what: str, name: str) -> LambdaflowError:
    """The typed error for a failed AWS call on resource ``what name``."""
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ConfigError(
            "no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    if not isinstance(exc, bx.ClientError):
        return BackendError(f"{what} {name}: {type(exc).__name__}: {exc}")
    error_code = code(exc)
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    op = exc.operation_name
    if error_code in BAD_CREDENTIALS:
        return ConfigError(
            f"AWS rejected the credentials ({error_code}) calling {op} on {what} "
            f"{name}: check AWS_PROFILE / AWS_ACCESS_KEY_ID or run `aws configure`"
        )
    if error_code in DENIED:
        return ConfigError(
            f"access denied: {op} on {what} {name} ({message}); the deploying user "
            "needs the policy in docs/AWS.md, section Permissions"
        )
    return BackendError(f"{op} on {what} {name} failed: {error_code}: {message}")


def lookup(fn: Callable[[], T], what: str, name: str) -> T | None:
    """``fn()``, or None when AWS answers that the resource does not exist."""
    try:
        return fn()
    except bx.ClientError as exc:
        if code(exc) in NOT_FOUND:
            return None
        raise translate(exc, what, name) from exc
    except bx.BotoCoreError as exc:
        raise translate(exc, what, name) from exc


def call(fn: Callable[[], T], what: str, name: str) -> T:
    """``fn()``, with its errors translated."""
    try:
        return fn()
    except (bx.ClientError, bx.BotoCoreError) as exc:
        raise translate(exc, what, name) from exc
