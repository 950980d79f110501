"""Run the whole classroom flow on local stand-ins, end to end.

    python examples/classroom/run_local.py --videos DIR --encodings FILE \\
        --students FILE --mapping FILE --results DIR [--concurrency N]

Flow::

    local_aws (moto server: S3, DynamoDB, SQS + Lambda emulator, function "classroom"
               running lambdaflow's worker entry point with app.py as its event module)
      -> setup_resources.setup_local  buckets, table, encodings, S3 -> SQS notification,
                                      the queue's dead-letter queue (failed events)
      -> SqsBridge                    SQS -> Lambda Invoke (synchronous, so a failure is
                                      seen), AWS S3 event shape; an event failing 3 times
                                      ends in the dead-letter queue with its error
      -> workload.upload_folder       every file of --videos, concurrently
      -> wait until every uploaded video with the suffix has its CSV (or --timeout)
      -> check.fetch_results          CSVs + timings.json into --results
      -> check.check                  accuracy, missing outputs, latency p50/p95, total

Exit status: 0 when the run completed (every video has an output), whatever the
accuracy; 1 when outputs are still missing at the timeout.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402
import setup_resources  # noqa: E402
import workload  # noqa: E402

from lambdaflow.events_bridge import SqsBridge, lambda_invoker  # noqa: E402
from lambdaflow.events_failed import list_failed  # noqa: E402

log = logging.getLogger("classroom.run_local")
FUNCTION = "classroom"


def default_handler() -> str:
    """The production entry point when it is there, else the event router alone."""
    if importlib.util.find_spec("lambdaflow.runtime.lambda_entry") is not None:
        return "lambdaflow.runtime.lambda_entry.lambda_handler"
    return "lambdaflow.events.dispatch"


def run(videos: Path, encodings: Path, students: Path, mapping: Path, results: Path, *,
        concurrency: int = 2, timeout_s: float = 600.0, handler: str | None = None,
        echo_logs: bool = False, names: setup_resources.Names | None = None,
        extra_messages: tuple[str, ...] = ()) -> dict:
    """The flow above (``extra_messages``: notification bodies sent to the queue after
    the uploads, for fault injection); returns {"completed", "report", "missing", "stats", "dead",
    "failed"} ("failed": the events in the dead-letter queue, with their errors)."""
    from lambdaflow.testing.aws_local import local_aws

    names = names or setup_resources.Names()
    student_records = setup_resources.load_students(students)
    expected = sorted(p.name for p in Path(videos).iterdir()
                      if p.is_file() and p.name.endswith(names.suffix))
    env = names.function_env(str(HERE / "app.py"))
    with local_aws(concurrency=concurrency, function_name=FUNCTION, timeout_s=120,
                   memory_mb=1024, handler=handler or default_handler(), env=env,
                   echo_logs=echo_logs, role_policy=local_role_policy(names)) as aws:
        from botocore.config import Config

        s3 = aws.client("s3", config=Config(max_pool_connections=32))
        lam = aws.client("lambda")
        queue = setup_resources.setup_local(s3, aws.client("dynamodb"), aws.client("sqs"),
                                            names, student_records, encodings, aws.region)
        deliver = lambda_invoker(lam, FUNCTION)
        sqs = aws.client("sqs")
        # One delivery per execution environment: more would only be throttled.
        with SqsBridge(sqs, queue, deliver, workers=concurrency) as bridge:
            started = time.time()
            uploads = workload.upload_folder(s3, names.input_bucket, videos,
                                             concurrency=16)
            for body in extra_messages:  # fault injection: duplicates, poison events
                sqs.send_message(QueueUrl=queue, MessageBody=body)
            log.info("uploaded %d files in %.2f s; waiting for %d outputs", len(uploads),
                     time.time() - started, len(expected))
            missing, peak_busy = _wait(aws, s3, names.output_bucket, expected, timeout_s)
            # Every notification is accounted for: delivered, or in the dead-letter queue.
            pending = _drain(sqs, queue, min(120.0, timeout_s))
        stats = aws.emulator.stats()["functions"].get(FUNCTION, {})
        stats["peak_busy"] = peak_busy
        stats["pending_messages"] = pending
        count = check.fetch_results(s3, names.output_bucket, results, uploads, names.suffix)
        log.info("copied %d CSVs into %s", count, results)
        dlq = sqs.get_queue_url(QueueName=names.failed_queue)["QueueUrl"]
        failed = list_failed(sqs, dlq)
    report = check.check(mapping, results)
    return {"completed": not missing, "report": report, "missing": missing, "stats": stats,
            "dead": bridge.dead, "failed": failed}


def _drain(sqs, queue: str, timeout_s: float) -> int:
    """Wait until the notification queue is empty (messages under retry included);
    returns how many are still there at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        left = sum(int(v) for v in attrs["Attributes"].values())
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def local_role_policy(names: setup_resources.Names) -> dict:
    """The classroom function's role on the local stand-ins (moto enforces it): exactly
    the calls app.py makes. ListBucket on the input bucket keeps a vanished upload a
    NoSuchKey (S3 answers 403 for a missing key without it), which app.py handles."""
    s3, table = "arn:aws:s3:::", f"arn:aws:dynamodb:*:*:table/{names.table}"
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [f"{s3}{names.input_bucket}/*",
                      f"{s3}{names.output_bucket}/{setup_resources.ENCODINGS_KEY}"]},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"{s3}{names.input_bucket}"},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{s3}{names.output_bucket}/*"},
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table},
    ]}  # fmt: skip


def _wait(aws, s3, bucket: str, expected: list[str], timeout_s: float) -> tuple[list, int]:
    want = {name.rsplit(".", 1)[0] + ".csv" for name in expected}
    deadline = time.monotonic() + timeout_s
    peak_busy, last = 0, -1
    while True:
        have = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            have.update(o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", []))
        done = len(want & have)
        fn = aws.emulator.stats()["functions"].get(FUNCTION, {})
        peak_busy = max(peak_busy, fn.get("busy", 0))
        if done != last:
            log.info("%d/%d outputs", done, len(want))
            last = done
        if done == len(want) or time.monotonic() > deadline:
            return sorted(want - have), peak_busy
        time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", required=True, type=Path, help="folder of videos to upload")
    p.add_argument("--encodings", required=True, type=Path, help="the 'encoding' pickle")
    p.add_argument("--students", required=True, type=Path, help="student_data.json")
    p.add_argument("--mapping", required=True, type=Path, help="expected answers")
    p.add_argument("--results", required=True, type=Path, help="where the CSVs are copied")
    p.add_argument("--concurrency", type=int, default=2,
                   help="Lambda concurrency (execution environments), default 2")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for outputs")
    p.add_argument("--handler", default=None, help="override the function's handler")
    p.add_argument("--echo-logs", action="store_true", help="show the function's logs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for path in (args.videos, args.encodings, args.students, args.mapping):
        if not path.exists():
            p.error(f"{path} does not exist (make test data with make_testdata.py)")
    out = run(args.videos, args.encodings, args.students, args.mapping, args.results,
              concurrency=args.concurrency, timeout_s=args.timeout, handler=args.handler,
              echo_logs=args.echo_logs)
    stats = out["stats"]
    print("\n".join(out["report"].lines()))
    print(f"lambda: {stats.get('invocations', 0)} invocations, "
          f"{stats.get('cold_starts', 0)} cold starts, peak {stats.get('peak_busy', 0)} busy "
          f"environments (concurrency {args.concurrency}), "
          f"{stats.get('async_retries', 0)} retries, {stats.get('async_dropped', 0)} dropped")
    if stats.get("pending_messages"):
        print(f"{stats['pending_messages']} notification(s) still queued (retrying)")
    for event in out["failed"]:
        print(f"failed event: {event.line()}")
    if out["failed"]:
        print(f"{len(out['failed'])} failed event(s) in the dead-letter queue; list them "
              "with `lambdaflow events failed --queue classroom-uploads-failed`")
    if not out["completed"]:
        print(f"run incomplete: {len(out['missing'])} outputs missing after {args.timeout} s",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
