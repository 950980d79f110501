"""The classroom assistant: who is in an uploaded video, and what do they study?

Registered with ``lambdaflow.events.on_upload`` and shipped to the worker function by
naming this module (or its path) in ``LAMBDAFLOW_EVENT_MODULES``; the worker's
``lambda_handler`` hands S3 events to ``lambdaflow.events.dispatch``, which calls
:func:`handle_upload` for every video uploaded to the input bucket.

Flow for one upload ``s3://INPUT/path/test_3.mp4``::

    GET the video bytes ──> lambdaflow.ops.faces.recognize_video (1 frame/s, tolerance 0.6,
    in memory)          ──> DynamoDB GetItem {"name": <recognised name>}
                        ──> PUT s3://OUTPUT/path/test_3.csv   (+ one log line)

Output format (always a CSV, never a silent gap):

    success                     failure
    -------                     -------
    name,major,year             name,major,year,error
    Joe Biden,History,freshman  <name or empty>,,,<status>: <reason>

A video that is only partly readable (truncated: the index's one line names it) is
``bad_video`` too, but keeps what its readable frames show: the row has the recognised
name and record, and the error column says what is missing.

``status`` is one of ``no_face`` (no face in any sampled frame), ``unknown_face`` (faces,
none within tolerance), ``no_record`` (recognised, but not in the table), ``bad_video``
(not a video / corrupt / truncated), ``bad_encodings`` (the known-faces file is malformed) and
``missing_input`` (the object was gone). Errors of the infrastructure itself (S3 or
DynamoDB unavailable) are raised, so Lambda retries the event; the output key is
deterministic, so a retry rewrites the same CSV. The CSV's S3 metadata carries
``finished-at`` (epoch seconds), ``processing-seconds`` and ``status`` for ``check.py``.

Configuration (environment of the function): CLASSROOM_INPUT_BUCKET,
CLASSROOM_OUTPUT_BUCKET, CLASSROOM_TABLE, CLASSROOM_ENCODINGS (``s3://bucket/key`` or a
path), optional CLASSROOM_SUFFIX (default ``.mp4``), CLASSROOM_STRATEGY (``first``),
CLASSROOM_EVERY_S (1.0), CLASSROOM_TOLERANCE (0.6). State per warm worker: the boto3
clients and the parsed encodings (re-read only when the file's ETag changes).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import lambdaflow.events
from lambdaflow.ops import faces

log = logging.getLogger("classroom")
log.setLevel(logging.INFO)

_LOCK = threading.Lock()
_KNOWN: dict[str, tuple[str, faces.KnownFaces]] = {}  # uri -> (etag, parsed)


@dataclass(frozen=True)
class Settings:
    input_bucket: str
    output_bucket: str
    table: str
    encodings: str
    suffix: str = ".mp4"
    strategy: str = "first"
    every_s: float = 1.0
    tolerance: float = faces.DEFAULT_TOLERANCE

    @classmethod
    def from_env(cls) -> Settings:
        missing = [v for v in ("CLASSROOM_INPUT_BUCKET", "CLASSROOM_OUTPUT_BUCKET",
                               "CLASSROOM_TABLE", "CLASSROOM_ENCODINGS") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(f"classroom app: environment variable(s) {missing} not set; "
                               "run examples/classroom/setup_resources.py, which sets them "
                               "on the function")
        env = os.environ
        return cls(env["CLASSROOM_INPUT_BUCKET"], env["CLASSROOM_OUTPUT_BUCKET"],
                   env["CLASSROOM_TABLE"], env["CLASSROOM_ENCODINGS"],
                   env.get("CLASSROOM_SUFFIX", ".mp4"), env.get("CLASSROOM_STRATEGY", "first"),
                   float(env.get("CLASSROOM_EVERY_S", "1.0")),
                   float(env.get("CLASSROOM_TOLERANCE", str(faces.DEFAULT_TOLERANCE))))


@cache
def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)  # endpoints / region come from the AWS_* environment


def known_faces(uri: str) -> faces.KnownFaces:
    """The encodings at ``uri`` (``s3://`` or a path), parsed once per warm worker and
    again only when the object's ETag changes."""
    if not uri.startswith("s3://"):
        return faces.load_encodings(uri)
    bucket, _, key = uri[5:].partition("/")
    etag = _client("s3").head_object(Bucket=bucket, Key=key)["ETag"]
    with _LOCK:
        cached = _KNOWN.get(uri)
    if cached and cached[0] == etag:
        return cached[1]
    data = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    known = faces.load_encodings(data, name=uri)
    with _LOCK:
        _KNOWN[uri] = (etag, known)
    return known


def output_key(key: str) -> str:
    """``path/test_3.mp4`` -> ``path/test_3.csv``."""
    head, _, name = key.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{stem}.csv" if head else f"{stem}.csv"


def render_csv(name: str | None, record: dict | None, status: str, reason: str) -> str:
    """The output CSV; a failure row keeps what was found (a truncated video's match and
    record) next to the error."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    found = record or {}
    if status == "ok":
        writer.writerow(["name", "major", "year"])
        writer.writerow([name, found.get("major", ""), found.get("year", "")])
    else:
        writer.writerow(["name", "major", "year", "error"])
        writer.writerow([name or "", found.get("major", ""), found.get("year", ""),
                         f"{status}: {reason}"])
    return buf.getvalue()


def process(bucket: str, key: str, settings: Settings) -> tuple[str | None, dict | None, str, str]:
    """Recognise and look up; returns (name, student record, status, reason)."""
    s3 = _client("s3")
    try:
        known = known_faces(settings.encodings)
    except faces.EncodingFileError as exc:
        return None, None, "bad_encodings", str(exc)
    try:
        video = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None, None, "missing_input", f"s3://{bucket}/{key} no longer exists"
    try:
        result = faces.recognize_video(video, known, every_s=settings.every_s,
                                       tolerance=settings.tolerance, strategy=settings.strategy,
                                       name=f"s3://{bucket}/{key}")
    except faces.VideoDecodeError as exc:
        return None, None, "bad_video", str(exc)
    if result.name is None:
        return None, None, "bad_video" if result.problem else result.status, result.reason
    table = _client("dynamodb")
    item = table.get_item(TableName=settings.table, Key={"name": {"S": result.name}},
                          ConsistentRead=True).get("Item")
    record = {k: next(iter(v.values())) for k, v in (item or {}).items()} or None
    if result.problem:  # a truncated upload: what its frames show is kept, and flagged
        return result.name, record, "bad_video", result.reason
    if record is None:
        return result.name, None, "no_record", (
            f"{result.reason}, but table {settings.table} has no student named {result.name!r}")
    return result.name, record, "ok", result.reason


@lambdaflow.events.on_upload(os.environ.get("CLASSROOM_INPUT_BUCKET", "classroom-input"),
                             suffix=os.environ.get("CLASSROOM_SUFFIX", ".mp4"))
def handle_upload(bucket: str, key: str, record: dict) -> None:
    """The S3 upload handler: always writes ``<video stem>.csv`` to the output bucket."""
    started = time.monotonic()
    settings = Settings.from_env()
    name, student, status, reason = process(bucket, key, settings)
    out = output_key(key)
    _client("s3").put_object(
        Bucket=settings.output_bucket, Key=out, ContentType="text/csv",
        Body=render_csv(name, student, status, reason).encode(),
        Metadata={"finished-at": f"{time.time():.3f}", "status": status,
                  "processing-seconds": f"{time.monotonic() - started:.3f}",
                  "source": f"s3://{bucket}/{key}"})
    level = logging.INFO if status == "ok" else logging.WARNING
    log.log(level, "video=s3://%s/%s status=%s name=%s output=s3://%s/%s seconds=%.2f reason=%s",
            bucket, key, status, name, settings.output_bucket, out,
            time.monotonic() - started, reason)
