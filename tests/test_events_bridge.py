"""The SQS -> Lambda bridge (lambdaflow.events_bridge) against a real moto server and
the Lambda emulator: AWS-shaped events, retries, and events that keep failing ending in
the dead-letter queue with their error (13.10); duplicate and poison notifications
neither lose nor duplicate other uploads' results (14.12)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
import urllib.parse

import boto3
import pytest

from lambdaflow import events
from lambdaflow.errors import ConfigError
from lambdaflow.events_bridge import SqsBridge, attach_dead_letter_queue, lambda_invoker
from lambdaflow.events_failed import list_failed, redrive


@pytest.fixture(scope="module")
def moto():
    from lambdaflow.testing.moto_server import MotoServer

    with MotoServer() as server:
        yield server


def _notifying_bucket(moto, name, *, dlq=True):
    s3 = boto3.client("s3", **moto.client_kwargs)
    sqs = boto3.client("sqs", **moto.client_kwargs)
    url = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    dlq_url = attach_dead_letter_queue(sqs, url, max_receive_count=3) if dlq else None
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn["Attributes"]["QueueArn"],
                                 "Events": ["s3:ObjectCreated:*"]}]})  # fmt: skip
    return s3, sqs, url, dlq_url


def _wait_for(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _counts(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]


def _key(event):
    return urllib.parse.unquote_plus(event["Records"][0]["s3"]["object"]["key"])


def test_a_queue_without_dead_letter_queue_is_refused(moto):
    _, sqs, url, _ = _notifying_bucket(moto, "no-dlq", dlq=False)
    with pytest.raises(ConfigError, match="no redrive policy"):
        SqsBridge(sqs, url, lambda event: None)


def test_bridge_delivers_aws_shaped_events_and_deletes_messages(moto):
    s3, sqs, url, dlq = _notifying_bucket(moto, "bridge-in")
    got, lock, fail_once = [], threading.Lock(), {"a b.mp4"}

    def deliver(event):
        with lock:
            if _key(event) in fail_once:  # a transient failure is retried, not lost
                fail_once.discard(_key(event))
                raise RuntimeError("throttled")
            got.append(event)

    keys = ["a b.mp4", "dir/c+d.mp4", "e.mp4"]
    with SqsBridge(sqs, url, deliver, workers=2, retry_delay_s=0) as bridge:
        for key in keys:
            s3.put_object(Bucket="bridge-in", Key=key, Body=b"data")
        _wait_for(lambda: len(got) == 3, "3 deliveries")
    record = got[0]["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert {"userIdentity", "requestParameters", "responseElements"} <= set(record)
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::bridge-in"
    assert sorted(r["Records"][0]["s3"]["object"]["key"] for r in got) == [
        "a+b.mp4", "dir/c%2Bd.mp4", "e.mp4"]
    assert sorted(k for _, k, _ in bridge.delivered) == sorted(keys) and not bridge.dead
    assert [f[1] for f in bridge.failures] == [1]  # the first receive failed, not lost
    empty = {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    assert _counts(sqs, url) == empty and _counts(sqs, dlq) == empty


def test_duplicate_and_poison_notifications(moto):
    """A duplicated notification is delivered twice (at-least-once, as on AWS) and the
    idempotent handler still leaves one output; a poison event (an object that cannot be
    processed, and a body that is not an S3 notification) ends in the DLQ with its error
    after maxReceiveCount tries; the other uploads are delivered exactly as uploaded."""
    s3, sqs, url, dlq = _notifying_bucket(moto, "dup-in")
    outputs: dict[str, int] = {}
    lock = threading.Lock()

    def deliver(event):  # an idempotent handler: output key = input key
        key = _key(event)
        if key.startswith("poison"):
            raise ValueError(f"cannot decode {key}")
        with lock:
            outputs[key] = outputs.get(key, 0) + 1

    with SqsBridge(sqs, url, deliver, workers=3, retry_delay_s=0) as bridge:
        for i in range(5):
            s3.put_object(Bucket="dup-in", Key=f"v{i}.mp4", Body=b"x")
        s3.put_object(Bucket="dup-in", Key="poison.mp4", Body=b"x")
        dup = json.dumps(events.s3_event("dup-in", "v1.mp4"))
        sqs.send_message(QueueUrl=url, MessageBody=dup)  # the same upload, notified twice
        sqs.send_message(QueueUrl=url, MessageBody="not json at all")
        _wait_for(lambda: len(bridge.dead) == 2 and sum(outputs.values()) == 6,
                  "5 uploads + 1 duplicate delivered, 2 poison messages dead-lettered")
    assert sorted(outputs) == [f"v{i}.mp4" for i in range(5)]  # nothing lost
    assert outputs["v1.mp4"] == 2 and sum(outputs.values()) == 6  # one key: one output
    assert _counts(sqs, url)["ApproximateNumberOfMessages"] == "0"
    failed = sorted(list_failed(sqs, dlq), key=lambda e: e.error)
    assert [e.kind for e in failed] == ["dead-letter", "dead-letter"]
    assert failed[1].objects == ["s3://dup-in/poison.mp4"]
    assert failed[1].error == "ValueError: cannot decode poison.mp4"
    assert failed[0].error.startswith("JSONDecodeError")
    # Listing consumed nothing.
    assert _counts(sqs, dlq)["ApproximateNumberOfMessages"] == "2"

    # Fixed, the events are redriven to the source queue and delivered.
    outputs.clear()
    done, refused = redrive(sqs, dlq, source_queue_url=url)
    assert len(done) == 2 and refused == []

    def deliver_fixed(event):
        with lock:
            outputs[_key(event)] = outputs.get(_key(event), 0) + 1

    with SqsBridge(sqs, url, deliver_fixed, retry_delay_s=0) as bridge:
        _wait_for(lambda: "poison.mp4" in outputs, "the redriven poison upload")
        _wait_for(lambda: len(bridge.dead) == 1, "the bad body dead-lettered again")
    assert outputs == {"poison.mp4": 1}


def test_redrive_needs_a_target(moto):
    _, sqs, url, dlq = _notifying_bucket(moto, "redrive-none")
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(events.s3_event("b", "k.mp4")))
    done, refused = redrive(sqs, dlq)
    assert done == [] and "give --to-queue" in refused[0][1]
    assert len(list_failed(sqs, dlq)) == 1  # kept


def test_bridge_invokes_a_function_in_the_lambda_emulator(moto, tmp_path):
    """The whole local path: S3 upload -> SQS -> bridge -> Lambda Invoke API ->
    awslambdaric environment running events.dispatch -> handler writes to S3; a handler
    that raises makes the invoke a function error, and the event ends in the DLQ."""
    from lambdaflow.testing.lambda_emulator import LambdaEmulator

    s3, sqs, url, dlq = _notifying_bucket(moto, "emu-in")
    s3.create_bucket(Bucket="emu-out")
    handler_file = tmp_path / "copy_handler.py"
    handler_file.write_text(textwrap.dedent("""
        import os, boto3, lambdaflow

        @lambdaflow.events.on_upload("emu-in", suffix=".txt")
        def copy(bucket, key, record):
            if key.startswith("bad"):
                raise RuntimeError("this upload cannot be processed")
            s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            s3.put_object(Bucket="emu-out", Key=key, Body=body.upper())
    """))
    # the emulator sets the region and the function's credentials (reserved keys)
    env = {events.EVENT_MODULES_ENV: str(handler_file), "S3_ENDPOINT": moto.endpoint_url}
    with LambdaEmulator(region=moto.region, shared_paths=[str(tmp_path)]) as emu:
        emu.create_function("router", handler="lambdaflow.events.dispatch", timeout_s=30,
                            env=env, concurrency=2)
        client = emu.client()  # signed with the emulator's per-run key
        with SqsBridge(sqs, url, lambda_invoker(client, "router"), workers=2,
                       retry_delay_s=0) as bridge:  # fmt: skip
            for key in ["x 1.txt", "y.txt", "bad.txt"]:
                s3.put_object(Bucket="emu-in", Key=key, Body=b"hello")

            def done():
                listed = s3.list_objects_v2(Bucket="emu-out").get("Contents", [])
                return len(listed) == 2 and len(bridge.dead) == 1

            _wait_for(done, "2 outputs in emu-out and 1 dead letter", timeout=120)
    assert s3.get_object(Bucket="emu-out", Key="x 1.txt")["Body"].read() == b"HELLO"
    [failed] = list_failed(sqs, dlq)
    assert failed.objects == ["s3://emu-in/bad.txt"]
    assert "this upload cannot be processed" in failed.error


def test_throttling_is_waited_out_not_counted_as_a_failure():
    from botocore.exceptions import ClientError

    class Lambda:
        calls = 0

        def invoke(self, **kwargs):
            self.calls += 1
            if self.calls <= 3:
                raise ClientError({"Error": {"Code": "TooManyRequestsException",
                                             "Message": "Rate Exceeded."}}, "Invoke")
            return {"StatusCode": 200, "Payload": None}

    lam, slept = Lambda(), []
    lambda_invoker(lam, "f", sleep=slept.append)(events.s3_event("b", "k"))
    assert lam.calls == 4 and slept == [0.2, 0.4, 0.8]
    lam.calls = -100
    with pytest.raises(ClientError, match="TooManyRequests"):
        lambda_invoker(lam, "f", throttle_budget_s=1.0, sleep=slept.append)(
            events.s3_event("b", "k"))
