"""The local stand-in for S3's Lambda notification: SQS queue -> Lambda Invoke.

Locally, moto's S3 sends upload notifications to an SQS queue; :class:`SqsBridge`
receives them and invokes the function once per S3 record, rebuilt in the shape AWS
sends (``lambdaflow.events.s3_event``), synchronously, so it sees a function error.
What happens to one message (``n`` = its ``ApproximateReceiveCount``)::

    received ──> deliver every record ──ok──> DeleteMessage                   (done)
                        │
                        └─fails─> n < maxReceiveCount: ChangeMessageVisibility(backoff)
                                  (SQS hands it out again later; n grows by one)
                                  n = maxReceiveCount: SendMessage to the DLQ with the
                                  error (attributes ErrorCode, ErrorMessage, RequestID,
                                  as Lambda's own dead-letter queues carry them), then
                                  DeleteMessage

The queue must have a redrive policy (``deadLetterTargetArn`` + ``maxReceiveCount``,
made by :func:`attach_dead_letter_queue`): the bridge moves a message at the receive on
which SQS itself would, and if the bridge dies mid-way SQS still moves the message on
its next receive, without the error. Nothing is deleted that was not delivered or
dead-lettered. Duplicate notifications are delivered as they come: handlers must be
idempotent (the classroom app writes a deterministic key).

State: ``delivered`` (bucket, key, time), ``dead`` (message body, error) and ``failures``
(attempts that failed), appended under ``_lock``; one poll thread, ``workers`` delivery
threads.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from lambdaflow.errors import ConfigError
from lambdaflow.events import s3_event

log = logging.getLogger(__name__)

__all__ = ["SqsBridge", "attach_dead_letter_queue", "lambda_invoker"]

#: Message attributes of a dead-lettered event (the names Lambda's DLQs use).
ERROR_ATTRIBUTES = ("ErrorCode", "ErrorMessage", "RequestID")


def attach_dead_letter_queue(
    sqs: Any, queue_url: str, *, max_receive_count: int = 3, tags: dict | None = None
) -> str:
    """Create ``<queue>-dlq`` and make it the queue's dead-letter target; returns its URL."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq", tags=tags or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"],
              "maxReceiveCount": str(max_receive_count)}  # fmt: skip
    sqs.set_queue_attributes(QueueUrl=queue_url,
                             Attributes={"RedrivePolicy": json.dumps(policy)})  # fmt: skip
    return dlq_url


def lambda_invoker(client: Any, function_name: str, *, throttle_budget_s: float = 60.0,
                   sleep: Callable[[float], None] = time.sleep) -> Callable[[dict], None]:
    """A ``deliver(event)`` for :class:`SqsBridge`: a synchronous Invoke of
    ``function_name``; raises on a function error or a bad status. Throttling (429) is
    waited out, with backoff, for up to ``throttle_budget_s``: a busy function is not a
    failed event (it would otherwise count towards the dead-letter queue)."""
    from botocore.exceptions import ClientError

    def invoke(payload: bytes) -> Any:
        delay, waited = 0.2, 0.0
        while True:
            try:
                return client.invoke(FunctionName=function_name,
                                     InvocationType="RequestResponse", Payload=payload)
            except ClientError as exc:
                throttled = exc.response.get("Error", {}).get("Code") == (
                    "TooManyRequestsException")  # fmt: skip
                if not throttled or waited >= throttle_budget_s:
                    raise
                sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)

    def deliver(event: dict) -> None:
        reply = invoke(json.dumps(event).encode())
        if reply.get("FunctionError"):
            detail = reply["Payload"].read()[:2000].decode(errors="replace")
            raise RuntimeError(f"{function_name} failed ({reply['FunctionError']}): {detail}")
        if reply.get("StatusCode") != 200:
            raise RuntimeError(f"{function_name} answered status {reply.get('StatusCode')}")

    return deliver


class SqsBridge:
    """Poll ``queue_url`` and ``deliver`` each S3 record, ``workers`` at a time (see the
    module docstring for what happens to a message)."""

    def __init__(self, sqs: Any, queue_url: str, deliver: Callable[[dict], None], *,
                 workers: int = 4, retry_delay_s: float = 1.0, visibility_s: int = 300,
                 region: str = "us-east-1") -> None:  # fmt: skip
        self.sqs, self.queue_url, self.deliver = sqs, queue_url, deliver
        self.workers, self.retry_delay_s, self.region = workers, retry_delay_s, region
        self.visibility_s = visibility_s
        self.max_receives, self.dead_letter_url = self._redrive_policy()
        self.delivered: list[tuple[str, str, float]] = []  # (bucket, key, monotonic)
        self.dead: list[tuple[str, str]] = []  # (message body, error)
        self.failures: list[tuple[str, int, str]] = []  # (message id, receive, error)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "sqs-bridge")
        self._slots = threading.Semaphore(workers)
        self._thread: threading.Thread | None = None

    def _redrive_policy(self) -> tuple[int, str]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
        ).get("Attributes", {})
        if "RedrivePolicy" not in attrs:
            raise ConfigError(
                f"queue {self.queue_url} has no redrive policy, so an event that keeps "
                "failing would have nowhere to go; attach a dead-letter queue first "
                "(lambdaflow.events_bridge.attach_dead_letter_queue)"
            )
        policy = json.loads(attrs["RedrivePolicy"])
        dlq_name = policy["deadLetterTargetArn"].rsplit(":", 1)[-1]
        dlq_url = self.sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
        return int(policy["maxReceiveCount"]), dlq_url

    def start(self) -> SqsBridge:
        self._thread = threading.Thread(target=self._poll, name="sqs-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> SqsBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                    VisibilityTimeout=self.visibility_s,
                    AttributeNames=["ApproximateReceiveCount"])  # fmt: skip
            except Exception:  # noqa: BLE001 - the queue may be briefly unavailable
                log.exception("receiving from %s failed; retrying", self.queue_url)
                self._stop.wait(1.0)
                continue
            for message in reply.get("Messages", []):
                self._slots.acquire()
                self._pool.submit(self._handle, message)

    def _handle(self, message: dict) -> None:
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        try:
            for event in self._events(message["Body"]):
                self.deliver(event)
                obj = event["Records"][0]["s3"]
                with self._lock:
                    self.delivered.append((obj["bucket"]["name"],
                                           urllib.parse.unquote_plus(obj["object"]["key"]),
                                           time.monotonic()))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any failure: keep the message
            self._failed(message, receives, exc)
        else:
            self._delete(message)
        finally:
            self._slots.release()

    def _failed(self, message: dict, receives: int, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.failures.append((message["MessageId"], receives, error))
        if receives < self.max_receives:
            delay = min(300, int(self.retry_delay_s * 2 ** (receives - 1)))
            log.warning("message %s: delivery %d/%d failed (%s); again in %d s",
                        message["MessageId"], receives, self.max_receives, error, delay)
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=delay)  # fmt: skip
            return
        log.error("message %s: delivery failed %d times; moved to %s: %s",
                  message["MessageId"], receives, self.dead_letter_url, error)
        self.sqs.send_message(
            QueueUrl=self.dead_letter_url, MessageBody=message["Body"],
            MessageAttributes={
                "ErrorCode": {"DataType": "String", "StringValue": type(exc).__name__},
                "ErrorMessage": {"DataType": "String", "StringValue": str(exc)[:4000]},
                "RequestID": {"DataType": "String", "StringValue": message["MessageId"]},
            })  # fmt: skip
        with self._lock:
            self.dead.append((message["Body"], error))
        self._delete(message)

    def _delete(self, message: dict) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url,
                                    ReceiptHandle=message["ReceiptHandle"])  # fmt: skip
        except Exception:  # noqa: BLE001 - redelivery is harmless: handlers are idempotent
            log.exception("deleting message %s failed", message.get("MessageId"))

    def _events(self, body: str) -> list[dict]:
        payload = json.loads(body)
        if payload.get("Event") == "s3:TestEvent":
            log.info("skipping S3 test event for bucket %s", payload.get("Bucket"))
            return []
        events = []
        for record in payload.get("Records", []):
            s3 = record["s3"]
            events.append(s3_event(
                s3["bucket"]["name"], urllib.parse.unquote_plus(s3["object"]["key"]),
                size=s3["object"].get("size", 0), etag=s3["object"].get("eTag", ""),
                event_name=record.get("eventName", "ObjectCreated:Put"),
                region=record.get("awsRegion", self.region),
                event_time=record.get("eventTime"),
                sequencer=s3["object"].get("sequencer")))  # fmt: skip
        return events
