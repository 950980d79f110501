"""Tests of lambdaflow.events: registration, dispatch of S3 / SQS-wrapped events and
handler modules (the local bridge: test_events_bridge.py)."""

from __future__ import annotations

import json
import textwrap

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


def test_is_event_is_gone():
    """Dead code (issue 10): lambda_entry routes on \"Records\" itself."""
    assert not hasattr(events, "is_event") and "is_event" not in events.__all__


def test_malformed_records_fail_so_they_are_dead_lettered_and_others_still_run():
    """Poison (14.12): a record without bucket or key, and an SQS message whose body is
    not JSON, are failures (Lambda then retries and dead-letters them; an SQS trigger
    gets them back as batchItemFailures), never dropped as 'ignored'; the good record
    in the same event is still handled."""
    calls = []
    events.on_upload("b")(_collector(calls))
    broken = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}
    event = {"Records": [broken] + events.s3_event("b", "ok.mp4")["Records"]}
    with pytest.raises(events.EventDispatchError, match="MalformedEvent") as info:
        events.dispatch(event)
    assert calls == [("b", "ok.mp4", "ObjectCreated:Put")]
    assert len(info.value.failures) == 1
    sqs = {"Records": [
        {"eventSource": "aws:sqs", "messageId": "m1", "body": "{truncated"},
        {"eventSource": "aws:sqs", "messageId": "m2", "body": json.dumps(events.s3_event("b", "k"))},
        {"eventSource": "aws:sqs", "messageId": "m3", "body": json.dumps({"Records": [broken]})},
        {"eventSource": "aws:sqs", "messageId": "m4", "body": "[1, 2]"},
    ]}
    report = events.dispatch(sqs)
    assert report["batchItemFailures"] == [{"itemIdentifier": m} for m in ("m1", "m3", "m4")]
    assert calls[-1] == ("b", "k", "ObjectCreated:Put") and report["ignored"] == []
