"""Events that failed for good: list them with their errors, and redrive them.

Where they end (one queue per app, ``lambdaflow events failed --queue Q`` reads it)::

    AWS    S3 -> Lambda (async): after Lambda's retries, the on-failure destination
           (PutFunctionEventInvokeConfig) gets a record
           {"requestContext": {...condition, approximateInvokeCount},
            "requestPayload": <the S3 event>, "responsePayload": {errorType, errorMessage}}
    local  S3 -> SQS -> SqsBridge: after maxReceiveCount deliveries, the queue's
           dead-letter queue gets the S3 notification itself, with the message
           attributes ErrorCode / ErrorMessage / RequestID (as Lambda's DLQs carry them);
           moved by SQS's own redrive (the bridge died mid-way): no error attributes

:func:`list_failed` reads the queue without consuming it (each message is made
visible again at once); :func:`redrive` takes each message, sends its event where it
came from (locally: back to the source queue; AWS: an asynchronous Invoke of the
function with the original payload) and deletes it only once that was accepted.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["FailedEvent", "list_failed", "parse", "redrive"]


@dataclass
class FailedEvent:
    message_id: str
    kind: str  # "destination" (Lambda on-failure) | "dead-letter" (SQS / bridge)
    objects: list[str]  # s3://bucket/key of every record
    error: str
    attempts: int | None
    payload: dict[str, Any] = field(repr=False)  # the event to send again
    receipt: str = field(default="", repr=False)

    def line(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts else ""
        return f"{', '.join(self.objects) or '(no S3 record)'}: {self.error}{tries}"


def _objects(event: dict) -> list[str]:
    out = []
    for record in event.get("Records", []) if isinstance(event, dict) else []:
        s3 = record.get("s3", {})
        key = urllib.parse.unquote_plus(s3.get("object", {}).get("key", ""))
        out.append(f"s3://{s3.get('bucket', {}).get('name', '?')}/{key}")
    return out


def parse(message: dict) -> FailedEvent:
    """One message of a failure queue, in either format (see the module docstring)."""
    body = message.get("Body", "")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    attrs = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
    if isinstance(data, dict) and "requestPayload" in data:  # Lambda destination record
        response = data.get("responsePayload") or {}
        context = data.get("requestContext") or {}
        error = (f"{response.get('errorType', context.get('condition', 'failed'))}: "
                 f"{response.get('errorMessage', '')}").strip(": ")  # fmt: skip
        return FailedEvent(message["MessageId"], "destination",
                           _objects(data["requestPayload"]), error,
                           context.get("approximateInvokeCount"), data["requestPayload"],
                           message.get("ReceiptHandle", ""))  # fmt: skip
    if "ErrorMessage" in attrs:
        error = f"{attrs.get('ErrorCode', 'Error')}: {attrs['ErrorMessage']}"
    else:
        error = "no error recorded (moved by the queue's redrive policy; see the logs)"
    receives = message.get("Attributes", {}).get("ApproximateReceiveCount")
    return FailedEvent(message["MessageId"], "dead-letter",
                       _objects(data) if isinstance(data, dict) else [], error,
                       None if "ErrorMessage" in attrs or receives is None else int(receives),
                       {"body": body}, message.get("ReceiptHandle", ""))  # fmt: skip


def _receive(sqs: Any, queue_url: str, visibility: int) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
        VisibilityTimeout=visibility, MessageAttributeNames=["All"],
        AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])  # fmt: skip


def list_failed(sqs: Any, queue_url: str, *, limit: int = 1000) -> list[FailedEvent]:
    """Every failed event in the queue (up to ``limit``), left in the queue."""
    seen: dict[str, FailedEvent] = {}
    taken: list[dict] = []
    try:
        while len(seen) < limit:
            batch = [m for m in _receive(sqs, queue_url, 30) if m["MessageId"] not in seen]
            if not batch:
                break
            for message in batch:
                seen[message["MessageId"]] = parse(message)
            taken.extend(batch)
    finally:
        for message in taken:  # visible again at once: listing consumes nothing
            sqs.change_message_visibility(QueueUrl=queue_url,
                                          ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)  # fmt: skip
    return list(seen.values())


def redrive(sqs: Any, queue_url: str, *, source_queue_url: str | None = None,
            lambda_client: Any = None, function_name: str | None = None,
            limit: int = 1000) -> tuple[list[FailedEvent], list[tuple[FailedEvent, str]]]:
    """Send every failed event back; returns (redriven, [(event, why not)]).

    Dead-lettered notifications go to ``source_queue_url``; destination records are
    invoked on ``function_name`` (Event). A message is deleted only after that succeeded.
    """
    done: list[FailedEvent] = []
    refused: list[tuple[FailedEvent, str]] = []
    refused_ids: set[str] = set()
    while len(done) + len(refused) < limit:
        batch = _receive(sqs, queue_url, 300)
        if not batch or all(m["MessageId"] in refused_ids for m in batch):
            for message in batch:
                sqs.change_message_visibility(QueueUrl=queue_url,
                                              ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)  # fmt: skip
            break
        for message in batch:
            if message["MessageId"] in refused_ids:
                continue
            event = parse(message)
            try:
                if event.kind == "destination":
                    if lambda_client is None or not function_name:
                        raise ValueError("a Lambda destination record: give --function")
                    reply = lambda_client.invoke(FunctionName=function_name,
                                                 InvocationType="Event",
                                                 Payload=json.dumps(event.payload).encode())
                    if reply.get("StatusCode") != 202:
                        raise RuntimeError(f"Invoke answered {reply.get('StatusCode')}")
                else:
                    if not source_queue_url:
                        raise ValueError("a dead-lettered notification: give --to-queue")
                    sqs.send_message(QueueUrl=source_queue_url,
                                     MessageBody=event.payload["body"])  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - report it, keep the message
                refused.append((event, f"{type(exc).__name__}: {exc}"))
                refused_ids.add(event.message_id)
                sqs.change_message_visibility(QueueUrl=queue_url,
                                              ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)  # fmt: skip
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            done.append(event)
    return done, refused
