"""Everything tagged ``lambdaflow:deployment=<name>``, found and deleted by type.

``destroy`` must also remove what deploy did not make itself but an app's setup tagged
as the deployment's (the classroom app's buckets, table and queues), and log groups of
functions that are already gone. They are found with one query of the Resource Groups
Tagging API (``GetResources`` with a tag filter, every service at once), and each is
deleted through its own service::

    arn:aws:s3:::B                          S3 bucket    emptied (every version), deleted
    arn:aws:dynamodb:R:A:table/T            table        DeleteTable
    arn:aws:sqs:R:A:Q                       queue        DeleteQueue
    arn:aws:logs:R:A:log-group:G(:*)        log group    DeleteLogGroup
    arn:aws:lambda:R:A:function:F           function     DeleteFunction
    (ECR repositories are listed too; plan.destroy deletes the deployment's own)

Before deleting, each resource's own tags are read again (the tagging API may list a
resource for a while after it was deleted or retagged): only a resource whose tag still
names the deployment is deleted; one already gone is ``absent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from lambdaflow.deploy import functions, storage
from lambdaflow.deploy.changes import ABSENT, DELETED, KEPT, Change
from lambdaflow.deploy.errors import call, lookup
from lambdaflow.deploy.settings import TAG_KEY


@dataclass(frozen=True)
class Tagged:
    kind: str  # "bucket" | "table" | "queue" | "log group" | "other"
    name: str
    arn: str


def parse_arn(arn: str) -> Tagged:
    parts = arn.split(":", 5)
    service, resource = parts[2], parts[5]
    if service == "s3" and "/" not in resource:
        return Tagged("bucket", resource, arn)
    if service == "dynamodb" and resource.startswith("table/"):
        return Tagged("table", resource.removeprefix("table/"), arn)
    if service == "sqs":
        return Tagged("queue", resource, arn)
    if service == "lambda" and resource.startswith("function:"):
        return Tagged("function", resource.removeprefix("function:").split(":")[0], arn)
    if service == "ecr" and resource.startswith("repository/"):
        return Tagged("repository", resource.removeprefix("repository/"), arn)
    if service == "logs" and resource.startswith("log-group:"):
        name = resource.removeprefix("log-group:").removesuffix(":*")
        return Tagged("log group", name, arn)
    return Tagged("other", resource, arn)


def find(tagging: Any, deployment: str) -> list[Tagged]:
    """Every resource the tagging API lists with the deployment's tag."""
    filters = [{"Key": TAG_KEY, "Values": [deployment]}]

    def pages() -> list[dict[str, Any]]:
        paginator = tagging.get_paginator("get_resources")
        return list(paginator.paginate(TagFilters=filters))

    found = call(pages, "tagged resources of deployment", deployment)
    return [
        parse_arn(item["ResourceARN"])
        for page in found
        for item in page.get("ResourceTagMappingList", [])
    ]


def delete(clients: Any, item: Tagged, deployment: str) -> Change:
    """Delete one tagged resource (after checking its own tags)."""
    if item.kind == "bucket":
        return storage.delete_bucket(clients.s3, item.name, deployment)
    if item.kind == "log group":
        return storage.delete_log_group(clients.logs, item.name, deployment)
    if item.kind == "table":
        return _delete_table(clients.dynamodb, item, deployment)
    if item.kind == "queue":
        return _delete_queue(clients.sqs, item, deployment)
    if item.kind == "function":
        return _delete_function(clients.lambda_, item, deployment)
    if item.kind == "repository":
        return functions.delete_repository(clients.ecr, item.name, deployment)
    return Change(item.kind, item.arn, KEPT, ["destroy does not delete this kind"])


def _delete_table(dynamodb: Any, item: Tagged, deployment: str) -> Change:
    tags = lookup(
        partial(dynamodb.list_tags_of_resource, ResourceArn=item.arn), "table", item.name
    )
    if tags is None:
        return Change("table", item.name, ABSENT)
    if {t["Key"]: t["Value"] for t in tags.get("Tags", [])}.get(TAG_KEY) != deployment:
        return Change("table", item.name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    gone = lookup(partial(dynamodb.delete_table, TableName=item.name), "table", item.name)
    return Change("table", item.name, ABSENT if gone is None else DELETED)


def _delete_queue(sqs: Any, item: Tagged, deployment: str) -> Change:
    found = lookup(partial(sqs.get_queue_url, QueueName=item.name), "queue", item.name)
    if found is None:
        return Change("queue", item.name, ABSENT)
    url = found["QueueUrl"]
    tags = call(partial(sqs.list_queue_tags, QueueUrl=url), "queue", item.name)
    if tags.get("Tags", {}).get(TAG_KEY) != deployment:
        return Change("queue", item.name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    gone = lookup(partial(sqs.delete_queue, QueueUrl=url), "queue", item.name)
    return Change("queue", item.name, ABSENT if gone is None else DELETED)


def _delete_function(lam: Any, item: Tagged, deployment: str) -> Change:
    tags = lookup(partial(lam.list_tags, Resource=item.arn), "Lambda function", item.name)
    if tags is None:
        return Change("function", item.name, ABSENT)
    if tags.get("Tags", {}).get(TAG_KEY) != deployment:
        return Change("function", item.name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    return functions.delete_function(lam, item.name)
