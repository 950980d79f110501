"""S3 authorization in moto, made to follow AWS's rules where lambdaflow depends on them.

moto's IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) checks signatures faithfully
but evaluates S3 policies loosely: it names HeadBucket ``s3:HeadBucket`` (AWS checks
``s3:ListBucket``), it ignores ``StringLike`` conditions (so an ``s3:prefix``-limited
ListBucket grants every prefix), and it answers 404 for a missing key whatever the
caller may list. AWS's documented behaviour, which this module installs in the moto
process (``moto_app`` calls :func:`install`):

- HeadBucket and ListObjects(V2) need ``s3:ListBucket`` on the bucket
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html);
- conditions are evaluated with the request's context keys: ``s3:prefix`` is the
  ``prefix`` query parameter of a list request, absent otherwise; an operator over an
  absent key does not match (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html);
- a GetObject/HeadObject of a missing key answers 404 only if the caller has
  ``s3:ListBucket`` on the bucket (evaluated without ``s3:prefix``, which a GET does
  not carry), else 403 AccessDenied
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html, "Permissions").

DynamoDB: moto checks DynamoDB actions against the resource ``"*"``, so a policy
scoped to a table ARN (as least privilege wants) never matches. Requests naming a
``TableName`` are evaluated here against ``arn:aws:dynamodb:<region>:<account>:table/<name>``.

Evaluation (explicit Deny wins, then any Allow, else implicit deny) covers Action /
NotAction, Resource / NotResource with ``*`` and ``?`` wildcards, and the String
operators; any other operator fails closed. S3 and table-level DynamoDB requests are
re-evaluated; every other service keeps moto's own evaluation.
"""

from __future__ import annotations

import contextvars
import fnmatch
import json
from typing import Any
from urllib.parse import parse_qs, urlparse

#: moto action name -> the IAM action AWS checks, where they differ
_ACTIONS = {"HeadBucket": "ListBucket", "ListBucketVersions": "ListBucketVersions"}
#: set during a GetObject check: may this caller list the bucket? (for 404 vs 403)
may_list: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "lambdaflow_may_list", default=None
)


def _matches(patterns: Any, value: str) -> bool:
    items = patterns if isinstance(patterns, list) else [patterns]
    return any(fnmatch.fnmatchcase(value, p) for p in items)


def _condition_ok(conditions: dict, context: dict[str, str]) -> bool:
    for operator, entries in conditions.items():
        for key, expected in entries.items():
            values = expected if isinstance(expected, list) else [expected]
            actual = context.get(key)
            if operator == "StringLike":
                ok = actual is not None and any(fnmatch.fnmatchcase(actual, v) for v in values)
            elif operator == "StringEquals":
                ok = actual is not None and actual in values
            elif operator == "StringNotLike":
                ok = actual is None or not any(fnmatch.fnmatchcase(actual, v) for v in values)
            elif operator == "StringNotEquals":
                ok = actual is None or actual not in values
            else:  # an operator this evaluator does not know: fail closed
                ok = False
            if not ok:
                return False
    return True


def evaluate(
    documents: list[dict], action: str, resource: str, context: dict[str, str]
) -> bool:
    """IAM's decision for identity policies: an explicit Deny wins, else any Allow."""
    allowed = False
    for doc in documents:
        statements = doc.get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            if "NotAction" in st:
                if _matches(st["NotAction"], action):
                    continue
            elif not _matches(st.get("Action", []), action):
                continue
            if "NotResource" in st:
                if _matches(st["NotResource"], resource):
                    continue
            elif not _matches(st.get("Resource", []), resource):
                continue
            if not _condition_ok(st.get("Condition", {}), context):
                continue
            if st.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def _documents(access_key: Any) -> list[dict]:
    from moto.iam.access_control import IAMPolicy

    return [IAMPolicy(p)._policy_json for p in access_key.collect_policies()]


def install() -> None:
    """Replace moto's S3 permission check with :func:`evaluate` (in the moto process)."""
    from moto.iam.access_control import S3IAMRequest

    def check_action_permitted(self: Any, resource: str) -> None:
        service, _, name = self._action.partition(":")
        action = f"s3:{_ACTIONS.get(name, name)}"
        query = parse_qs(urlparse(self._path).query, keep_blank_values=True)
        context: dict[str, str] = {}
        if action == "s3:ListBucket" and "prefix" in query:
            context["s3:prefix"] = query["prefix"][0]
        docs = _documents(self._access_key)
        if not evaluate(docs, action, resource, context):
            self._raise_access_denied()
        if action == "s3:GetObject":
            bucket = resource.split(":::", 1)[1].split("/", 1)[0]
            may_list.set(evaluate(docs, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}))

    S3IAMRequest.check_action_permitted = check_action_permitted  # type: ignore[method-assign]

    from moto.iam.access_control import IAMRequest

    moto_check = IAMRequest.check_action_permitted

    def check_table_action(self: Any, resource: str) -> None:
        if self._service != "dynamodb" or resource != "*":
            return moto_check(self, resource)
        try:
            table = json.loads(self._body or b"{}").get("TableName")
        except (ValueError, AttributeError):
            table = None
        if not table:
            return moto_check(self, resource)
        arn = f"arn:aws:dynamodb:{self._region}:{self.account_id}:table/{table}"
        if not evaluate(_documents(self._access_key), self._action, arn, {}):
            self._raise_access_denied()
        return None

    IAMRequest.check_action_permitted = check_table_action  # type: ignore[method-assign]


def missing_key_body() -> bytes:
    return (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
        b"<Message>Access Denied</Message></Error>"
    )


__all__ = ["evaluate", "install", "may_list", "missing_key_body"]
