"""lambdaflow.events_failed and ``lambdaflow events failed``: both failure formats (the
record AWS documents for an on-failure destination, and a dead-lettered notification)
and the command against moto."""

from __future__ import annotations

import argparse
import json

import boto3
import pytest

from lambdaflow import events
from lambdaflow.commands import events as command
from lambdaflow.events_failed import parse
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS, MotoServer

#: The shape of an on-failure destination record, as in AWS's Lambda developer guide
#: ("Capturing records of Lambda asynchronous invocations").
DESTINATION_RECORD = {
    "version": "1.0",
    "timestamp": "2026-11-30T12:00:00.000Z",
    "requestContext": {
        "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:lambdaflow-1769:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": events.s3_event("classroom-input", "class 1/test_3.mp4"),
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                        "functionError": "Unhandled"},
    "responsePayload": {"errorMessage": "1 upload handler(s) failed: table missing",
                        "errorType": "EventDispatchError", "stackTrace": []},
}


def test_a_lambda_destination_record():
    event = parse({"MessageId": "m1", "Body": json.dumps(DESTINATION_RECORD)})
    assert event.kind == "destination" and event.attempts == 3
    assert event.objects == ["s3://classroom-input/class 1/test_3.mp4"]
    assert event.error == "EventDispatchError: 1 upload handler(s) failed: table missing"
    assert event.payload == DESTINATION_RECORD["requestPayload"]


def test_a_notification_moved_by_sqs_alone_says_so():
    event = parse({"MessageId": "m2", "Body": json.dumps(events.s3_event("b", "k")),
                   "Attributes": {"ApproximateReceiveCount": "4"}})
    assert event.kind == "dead-letter" and event.attempts == 4
    assert "no error recorded" in event.error


@pytest.fixture
def run(monkeypatch, capsys):
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser(prog="lambdaflow")
    command.register(parser.add_subparsers())
    with MotoServer() as moto:
        def run(*argv):
            args = parser.parse_args([*argv, "--endpoint-url", moto.endpoint_url,
                                      "--region", "us-east-1"])  # fmt: skip
            return args.func(args), capsys.readouterr().out

        yield run, boto3.client("sqs", **moto.client_kwargs), boto3.client(
            "lambda", **moto.client_kwargs)


def test_command_lists_then_redrives(run):
    run, sqs, lam = run
    url = sqs.create_queue(QueueName="uploads-failed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(DESTINATION_RECORD))
    code, out = run("events", "failed", "--queue", "uploads-failed")
    assert code == 0
    assert "destination s3://classroom-input/class 1/test_3.mp4: EventDispatchError" in out
    assert "after 3 attempts" in out and "1 failed event(s)" in out
    # No function to send it to: kept, exit 1.
    code, out = run("events", "failed", "--queue", url, "--redrive")
    assert code == 1 and "give --function" in out and "0 redriven, 1 kept" in out
    code, out = run("events", "failed", "--queue", "uploads-failed")
    assert "1 failed event(s)" in out
