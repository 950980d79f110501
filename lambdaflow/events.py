"""Event-driven entry points: S3 upload notifications routed to registered handlers.

    import lambdaflow

    @lambdaflow.on_upload("videos-in", suffix=".mp4")
    def handle(bucket: str, key: str, record: dict) -> None: ...

Flow on AWS::

    S3 ObjectCreated ──> Lambda (the universal worker function)
        └─ lambda_entry.lambda_handler(event)   event has "Records", not a task message
             └─ events.dispatch(event, context)
                  ├─ load_event_modules()     imports $LAMBDAFLOW_EVENT_MODULES once per
                  │                           warm worker; their decorators register here
                  └─ for each S3 record (direct, or in an SQS message body / SNS envelope):
                       key = unquote_plus(record.s3.object.key)
                       the first handler whose bucket/prefix/suffix match gets
                       handler(bucket, key, record)

Locally, ``lambdaflow.events_bridge.SqsBridge`` stands in for S3's Lambda notification
(moto sends S3 notifications to an SQS queue; the bridge invokes the function with each
record rebuilt by :func:`s3_event` in the shape AWS sends). Events that keep failing end
in a dead-letter queue, on AWS and locally; ``lambdaflow.events_failed`` lists and
redrives them (``lambdaflow events failed``).

State: ``_HANDLERS`` (the registry, in registration order) and ``_IMPORTED`` (modules
already imported), both guarded by ``_LOCK``. Nothing is silently dropped: a record with
no matching handler is logged at WARNING and listed under "unmatched" in the report
``dispatch`` returns; a handler that raises is logged with its traceback, the other
records still run, and then :class:`EventDispatchError` is raised so Lambda retries or
dead-letters the event (handlers must therefore be idempotent). A malformed record (no
bucket or key, an SQS body that is not JSON) is a failure too: it is poison that
retrying will not cure, but it must reach the dead-letter path, not vanish. For SQS-wrapped events
the report carries ``batchItemFailures`` (partial batch response) instead of raising.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_MODULES_ENV",
    "EventDispatchError",
    "UploadHandler",
    "clear_handlers",
    "dispatch",
    "load_event_modules",
    "on_upload",
    "registered_handlers",
    "s3_event",
]

EVENT_MODULES_ENV = "LAMBDAFLOW_EVENT_MODULES"
Handler = Callable[[str, str, dict], Any]

_LOCK = threading.Lock()
_HANDLERS: list[UploadHandler] = []
_IMPORTED: set[str] = set()


class EventDispatchError(RuntimeError):
    """One or more handlers raised; ``.failures`` lists ``(bucket, key, error text)``."""

    def __init__(self, message: str, failures: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class UploadHandler:
    bucket: str
    prefix: str
    suffix: str
    fn: Handler

    def matches(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix)

    def __str__(self) -> str:
        name = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', '?')}"
        return f"{name} (s3://{self.bucket}/{self.prefix}*{self.suffix})"


def on_upload(bucket: str, *, prefix: str = "", suffix: str = "") -> Callable[[Handler], Handler]:
    """Register ``fn(bucket, key, record)`` for objects created in ``bucket`` whose key
    starts with ``prefix`` and ends with ``suffix``. Returns ``fn`` unchanged."""
    if not bucket or not isinstance(bucket, str):
        raise ValueError(f"on_upload needs a bucket name, got {bucket!r}; set it (for "
                         "example from an environment variable) before the module is imported")

    def register(fn: Handler) -> Handler:
        if not callable(fn):
            raise TypeError(f"on_upload({bucket!r}) decorates a function, got {fn!r}")
        entry = UploadHandler(bucket, prefix, suffix, fn)
        with _LOCK:
            # Re-importing a module (tests, reloads) replaces its earlier registration.
            _HANDLERS[:] = [h for h in _HANDLERS if not _same(h, entry)]
            _HANDLERS.append(entry)
        log.debug("registered upload handler %s", entry)
        return fn

    return register


def _same(a: UploadHandler, b: UploadHandler) -> bool:
    return (a.bucket, a.prefix, a.suffix) == (b.bucket, b.prefix, b.suffix) and (
        getattr(a.fn, "__module__", None), getattr(a.fn, "__qualname__", None)
    ) == (getattr(b.fn, "__module__", None), getattr(b.fn, "__qualname__", None))


def registered_handlers() -> list[UploadHandler]:
    with _LOCK:
        return list(_HANDLERS)


def clear_handlers() -> None:
    """Forget every registration and imported module (for tests)."""
    with _LOCK:
        _HANDLERS.clear()
        _IMPORTED.clear()


def load_event_modules(spec: str | None = None) -> list[str]:
    """Import the handler modules named in ``spec`` (default ``$LAMBDAFLOW_EVENT_MODULES``):
    comma-separated module names, or paths of ``.py`` files. Each is imported once per
    process. Returns the newly imported names."""
    spec = os.environ.get(EVENT_MODULES_ENV, "") if spec is None else spec
    new = []
    for item in (s.strip() for s in spec.split(",")):
        with _LOCK:
            if not item or item in _IMPORTED:
                continue
        try:
            if item.endswith(".py"):
                path = Path(item)
                name = f"lambdaflow_events_{path.stem}"
                module_spec = importlib.util.spec_from_file_location(name, path)
                if module_spec is None or module_spec.loader is None or not path.exists():
                    raise ImportError(f"no such file {path}")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except Exception as exc:
            raise ImportError(
                f"{EVENT_MODULES_ENV}: cannot import handler module {item!r} ({exc}); "
                "ship it with the function and name it as an importable module or a .py path"
            ) from exc
        with _LOCK:
            _IMPORTED.add(item)
        new.append(item)
        log.info("imported event handler module %s", item)
    return new


def _s3_records(event: dict, report: dict) -> Iterator[tuple[dict, str | None]]:
    """Yield ``(s3 record, sqs message id or None)``, unwrapping SQS and SNS envelopes."""
    for record in event.get("Records", []):
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:s3":
            yield record, None
        elif source in ("aws:sqs", "aws:sns"):
            body = record.get("body") if source == "aws:sqs" else record["Sns"]["Message"]
            msg_id = record.get("messageId")
            try:
                inner = json.loads(body)
                if inner.get("Type") == "Notification" and "Message" in inner:  # SNS in SQS
                    inner = json.loads(inner["Message"])
            except (TypeError, ValueError, AttributeError) as exc:
                yield {_MALFORMED: f"the message body is not JSON ({exc})"}, msg_id
                continue
            if not isinstance(inner, dict):
                yield {_MALFORMED: "the message body is not a JSON object"}, msg_id
                continue
            if inner.get("Event") == "s3:TestEvent":
                report["ignored"].append({"message": msg_id, "why": "s3:TestEvent"})
                continue
            for sub, _ in _s3_records(inner, report):
                yield sub, msg_id
        else:
            log.warning("event record from %r is not an S3 notification; ignored", source)
            report["ignored"].append({"source": source, "why": "not an S3 record"})


_MALFORMED = "lambdaflow.malformed"  # a record that could not be read: why


def _object_of(record: dict) -> tuple[str, str, str | None]:
    """(bucket, key, None) of an S3 record, or ("", "", why) when it is malformed."""
    why = record.get(_MALFORMED)
    if why is not None:
        return "", "", str(why)
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        key = urllib.parse.unquote_plus(s3["object"]["key"])
    except (KeyError, TypeError) as exc:
        return "", "", f"an S3 record without {exc} (s3.bucket.name and s3.object.key)"
    if not isinstance(bucket, str) or not bucket or not key:
        return "", "", "an S3 record with an empty bucket name or object key"
    return bucket, key, None


def dispatch(event: dict, context: Any = None) -> dict:
    """Route every S3 record in ``event`` to its handler; returns a report
    ``{"handled": [...], "unmatched": [...], "failed": [...], "ignored": [...]}``."""
    load_event_modules()
    handlers = registered_handlers()
    report: dict[str, list] = {"handled": [], "unmatched": [], "failed": [], "ignored": []}
    failed_messages: list[str] = []
    for record, msg_id in _s3_records(event, report):
        bucket, key, why = _object_of(record)
        if why is not None:  # poison: retried, then dead-lettered (never silently dropped)
            log.error("event record %s is malformed: %s", msg_id or "", why)
            report["failed"].append({"bucket": bucket, "key": key,
                                     "error": f"MalformedEvent: {why}"})
            if msg_id and msg_id not in failed_messages:
                failed_messages.append(msg_id)
            continue
        name = record.get("eventName", "")
        where = f"s3://{bucket}/{key}"
        if not name.startswith("ObjectCreated"):
            log.info("%s: %s is not an upload; ignored", where, name)
            report["ignored"].append({"bucket": bucket, "key": key, "why": name})
            continue
        handler = next((h for h in handlers if h.matches(bucket, key)), None)
        if handler is None:
            log.warning("%s: no upload handler matches (registered: %s; modules from $%s=%r)",
                        where, [str(h) for h in handlers] or "none", EVENT_MODULES_ENV,
                        os.environ.get(EVENT_MODULES_ENV, ""))
            report["unmatched"].append({"bucket": bucket, "key": key})
            continue
        started = time.monotonic()
        try:
            handler.fn(bucket, key, record)
        except Exception as exc:
            log.exception("%s: handler %s failed", where, handler)
            report["failed"].append({"bucket": bucket, "key": key,
                                     "error": f"{type(exc).__name__}: {exc}"})
            if msg_id and msg_id not in failed_messages:
                failed_messages.append(msg_id)
            continue
        report["handled"].append({"bucket": bucket, "key": key,
                                  "seconds": round(time.monotonic() - started, 3)})
    if any(r.get("eventSource") == "aws:sqs" for r in event.get("Records", [])):
        # SQS trigger (partial batch response): only the failed messages come back.
        report["batchItemFailures"] = [{"itemIdentifier": m} for m in failed_messages]
    elif report["failed"]:
        raise EventDispatchError(
            f"{len(report['failed'])} upload handler(s) failed: "
            + "; ".join(f"s3://{f['bucket']}/{f['key']}: {f['error']}" for f in report["failed"]),
            [(f["bucket"], f["key"], f["error"]) for f in report["failed"]])
    return report


def s3_event(bucket: str, key: str, *, size: int = 0, etag: str = "",
             event_name: str = "ObjectCreated:Put", region: str = "us-east-1",
             event_time: str | None = None, sequencer: str | None = None) -> dict:
    """The event S3 sends to Lambda for one object (``key`` given decoded; it is
    URL-encoded here as S3 does: spaces as ``+``, ``/`` kept)."""
    event_time = event_time or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:LOCAL"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "LOCAL", "x-amz-id-2": "LOCAL"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "lambdaflow-local",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOCAL"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": size,
                       "eTag": etag, "sequencer": sequencer or f"{time.time_ns():016X}"},
        },
    }]}
