"""Tests of lambdaflow.events: registration, dispatch of S3 / SQS-wrapped events, handler
modules, and the SQS -> Lambda bridge against a real moto server and the Lambda emulator."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import pytest

from lambdaflow import events


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.delenv(events.EVENT_MODULES_ENV, raising=False)
    events.clear_handlers()
    yield
    events.clear_handlers()


def _collector(calls):
    def handler(bucket, key, record):
        calls.append((bucket, key, record["eventName"]))

    return handler


def test_dispatch_decodes_keys_and_routes_by_bucket_prefix_suffix():
    calls, other = [], []
    events.on_upload("in-bucket", prefix="videos/", suffix=".mp4")(_collector(calls))
    events.on_upload("other-bucket")(_collector(other))
    key = "videos/lecture 1+notes é.mp4"
    event = events.s3_event("in-bucket", key)
    assert event["Records"][0]["s3"]["object"]["key"] == "videos/lecture+1%2Bnotes+%C3%A9.mp4"
    report = events.dispatch(event, None)
    assert calls == [("in-bucket", key, "ObjectCreated:Put")]
    assert [h["key"] for h in report["handled"]] == [key]
    events.dispatch(events.s3_event("other-bucket", "x.txt"))
    assert other == [("other-bucket", "x.txt", "ObjectCreated:Put")]


def test_unmatched_records_are_reported_and_logged(caplog):
    calls = []
    events.on_upload("in-bucket", suffix=".mp4")(_collector(calls))
    event = {"Records": events.s3_event("in-bucket", "notes.txt")["Records"]
             + events.s3_event("nobody", "a.mp4")["Records"]}
    report = events.dispatch(event)
    assert calls == []
    assert report["unmatched"] == [{"bucket": "in-bucket", "key": "notes.txt"},
                                   {"bucket": "nobody", "key": "a.mp4"}]
    assert "no upload handler matches" in caplog.text


def test_non_upload_events_are_ignored_not_handled():
    calls = []
    events.on_upload("b")(_collector(calls))
    report = events.dispatch(events.s3_event("b", "k", event_name="ObjectRemoved:Delete"))
    assert calls == [] and report["ignored"][0]["why"] == "ObjectRemoved:Delete"


def test_s3_records_inside_sqs_messages():
    calls = []
    events.on_upload("b")(_collector(calls))
    body = json.dumps(events.s3_event("b", "a b.mp4"))
    sns_body = json.dumps({"Type": "Notification",
                           "Message": json.dumps(events.s3_event("b", "c.mp4"))})
    event = {"Records": [
        {"eventSource": "aws:sqs", "messageId": "m1", "body": body},
        {"eventSource": "aws:sqs", "messageId": "m2", "body": sns_body},
        {"eventSource": "aws:sqs", "messageId": "m3",
         "body": json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})},
    ]}
    report = events.dispatch(event)
    assert [c[1] for c in calls] == ["a b.mp4", "c.mp4"]
    assert report["ignored"] == [{"message": "m3", "why": "s3:TestEvent"}]
    assert report["batchItemFailures"] == []  # SQS partial batch response: all succeeded


def test_a_failing_handler_does_not_stop_the_others_then_raises():
    calls = []

    @events.on_upload("b", suffix=".bad")
    def bad(bucket, key, record):
        raise ValueError("broken input")

    events.on_upload("b", suffix=".mp4")(_collector(calls))
    event = {"Records": events.s3_event("b", "x.bad")["Records"]
             + events.s3_event("b", "y.mp4")["Records"]}
    with pytest.raises(events.EventDispatchError, match="s3://b/x.bad: ValueError: broken") as info:
        events.dispatch(event)
    assert calls == [("b", "y.mp4", "ObjectCreated:Put")]
    assert info.value.failures == [("b", "x.bad", "ValueError: broken input")]


def test_sqs_wrapped_failures_become_batch_item_failures():
    @events.on_upload("b")
    def bad(bucket, key, record):
        raise RuntimeError("nope")

    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1",
                          "body": json.dumps(events.s3_event("b", "k"))}]}
    assert events.dispatch(event)["batchItemFailures"] == [{"itemIdentifier": "m1"}]


def test_reregistering_the_same_function_replaces_it():
    calls = []
    for _ in range(2):
        events.on_upload("b")(_collector(calls))
    assert len(events.registered_handlers()) == 1


def test_on_upload_checks_its_arguments():
    with pytest.raises(ValueError, match="bucket name"):
        events.on_upload("")
    with pytest.raises(TypeError, match="decorates a function"):
        events.on_upload("b")(42)


def test_handler_modules_from_the_environment_are_imported_once(tmp_path, monkeypatch):
    module = tmp_path / "my_handlers.py"
    module.write_text(textwrap.dedent("""
        import lambdaflow.events as ev
        IMPORTS = globals().get("IMPORTS", 0) + 1
        CALLS = []

        @ev.on_upload("b", suffix=".mp4")
        def handle(bucket, key, record):
            CALLS.append(key)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(events.EVENT_MODULES_ENV, "my_handlers, ")
    events.dispatch(events.s3_event("b", "1.mp4"))
    events.dispatch(events.s3_event("b", "2.mp4"))
    import my_handlers

    assert my_handlers.CALLS == ["1.mp4", "2.mp4"]
    assert events.load_event_modules() == []  # already imported
    by_path = tmp_path / "by_path.py"
    by_path.write_text("import lambdaflow.events as ev\n"
                       "ev.on_upload('p')(lambda b, k, r: None)\n")
    assert events.load_event_modules(str(by_path)) == [str(by_path)]
    assert any(h.bucket == "p" for h in events.registered_handlers())


def test_a_missing_handler_module_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(events.EVENT_MODULES_ENV, "no_such_module_xyz")
    with pytest.raises(ImportError, match="LAMBDAFLOW_EVENT_MODULES.*no_such_module_xyz"):
        events.dispatch(events.s3_event("b", "k"))


def test_is_event():
    assert events.is_event(events.s3_event("b", "k"))
    assert not events.is_event({"version": 1}) and not events.is_event(b"msgpack")


# ------------------------------------------------------------------ the bridge


@pytest.fixture(scope="module")
def moto():
    from lambdaflow.testing.moto_server import MotoServer

    with MotoServer() as server:
        yield server


def _notifying_bucket(moto, name):
    import boto3

    s3 = boto3.client("s3", **moto.client_kwargs)
    sqs = boto3.client("sqs", **moto.client_kwargs)
    url = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn["Attributes"]["QueueArn"],
                                 "Events": ["s3:ObjectCreated:*"]}]})
    return s3, sqs, url


def _wait_for(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_bridge_delivers_aws_shaped_events_and_deletes_messages(moto):
    s3, sqs, url = _notifying_bucket(moto, "bridge-in")
    got, lock, fail_once = [], threading.Lock(), {"a b.mp4"}

    def deliver(event):
        with lock:
            key = events.urllib.parse.unquote_plus(event["Records"][0]["s3"]["object"]["key"])
            if key in fail_once:  # a transient failure is retried, not lost
                fail_once.discard(key)
                raise RuntimeError("throttled")
            got.append(event)

    keys = ["a b.mp4", "dir/c+d.mp4", "e.mp4"]
    with events.SqsBridge(sqs, url, deliver, workers=2) as bridge:
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
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert left == {"ApproximateNumberOfMessages": "0",
                    "ApproximateNumberOfMessagesNotVisible": "0"}


def test_bridge_invokes_a_function_in_the_lambda_emulator(moto, tmp_path):
    """The whole local path: S3 upload -> SQS -> bridge -> Lambda Invoke API ->
    awslambdaric environment running events.dispatch -> handler writes to S3."""

    from lambdaflow.testing.lambda_emulator import LambdaEmulator

    s3, sqs, url = _notifying_bucket(moto, "emu-in")
    s3.create_bucket(Bucket="emu-out")
    handler_file = tmp_path / "copy_handler.py"
    handler_file.write_text(textwrap.dedent("""
        import os, boto3, lambdaflow

        @lambdaflow.events.on_upload("emu-in", suffix=".txt")
        def copy(bucket, key, record):
            s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            s3.put_object(Bucket="emu-out", Key=key, Body=body.upper())
    """))
    # the emulator sets the region and the function's credentials (reserved keys)
    env = {events.EVENT_MODULES_ENV: str(handler_file), "S3_ENDPOINT": moto.endpoint_url}
    with LambdaEmulator(region=moto.region, shared_paths=[str(tmp_path)]) as emu:
        emu.create_function("router", handler="lambdaflow.events.dispatch", timeout_s=30,
                            env=env, concurrency=2)
        client = emu.client()
        deliver = events.lambda_invoker(client, "router", invocation_type="RequestResponse")
        with events.SqsBridge(sqs, url, deliver, workers=2):
            for key in ["x 1.txt", "y.txt"]:
                s3.put_object(Bucket="emu-in", Key=key, Body=b"hello")

            def done():
                listed = s3.list_objects_v2(Bucket="emu-out").get("Contents", [])
                return len(listed) == 2

            _wait_for(done, "2 outputs in emu-out", timeout=120)
    assert s3.get_object(Bucket="emu-out", Key="x 1.txt")["Body"].read() == b"HELLO"
