"""Create what the classroom app needs: buckets, the students table, the known-faces
file, the upload notification and the function's environment.

    # AWS: first the grants the app needs, on the worker role (prints the flags)
    python examples/classroom/setup_resources.py --print-deploy-flags
    lambdaflow deploy --bucket JOBS $(python examples/classroom/setup_resources.py \\
        --print-deploy-flags)
    # then the resources (the function deployed, its image containing app.py)
    python examples/classroom/setup_resources.py --aws --function NAME \\
        --students student_data.json --encodings encoding

    # local stand-ins: run_local.py calls setup_local() itself

Steps (each idempotent, so a re-run updates rather than fails):

1. input and output buckets;
2. DynamoDB table ``name`` (string hash key, on demand) filled from student_data.json;
3. the ``encoding`` file uploaded to ``s3://OUTPUT/config/encoding``;
4. where failed events end: the queue ``classroom-uploads-failed``; on AWS the function's
   on-failure destination (PutFunctionEventInvokeConfig: 2 retries, then the record with
   the error), locally the dead-letter queue of the notification queue (the bridge moves
   a message there after 3 failed deliveries, with its error);
5. notification: locally S3 -> SQS queue (moto server delivers there; the bridge in
   lambdaflow.events_bridge takes it to the Lambda emulator); on AWS S3 -> Lambda
   directly, allowed for s3.amazonaws.com from this bucket *and this account*
   (``SourceArn`` + ``SourceAccount``: bucket names are global, so a deleted bucket's
   name re-created in another account cannot invoke the function);
6. on AWS, the function's environment gains the CLASSROOM_* and LAMBDAFLOW_EVENT_MODULES
   variables (locally they are passed when the emulated function is created); a later
   ``lambdaflow deploy`` keeps them (it owns only its own variables).

Everything created is tagged ``lambdaflow:deployment=<--deployment>`` (default
``lambdaflow``), so ``lambdaflow destroy`` removes the buckets, table and queues too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("classroom.setup")

TAG_KEY = "lambdaflow:deployment"  # as lambdaflow.deploy.settings.TAG_KEY

ENCODINGS_KEY = "config/encoding"


@dataclass(frozen=True)
class Names:
    input_bucket: str = "classroom-input"
    output_bucket: str = "classroom-output"
    table: str = "classroom-students"
    queue: str = "classroom-uploads"
    suffix: str = ".mp4"
    extra_env: dict = field(default_factory=dict)
    deployment: str = "lambdaflow"

    @property
    def encodings_uri(self) -> str:
        return f"s3://{self.output_bucket}/{ENCODINGS_KEY}"

    @property
    def failed_queue(self) -> str:
        """Where events that failed for good end (the DLQ / on-failure destination)."""
        return f"{self.queue}-failed"

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.deployment}

    def deploy_flags(self) -> list[str]:
        """The grants of `lambdaflow deploy` that app.py needs, and nothing more: it
        reads the uploads and the encodings, writes the CSVs, GetItem on the table;
        Lambda sends failed events to the failure queue with the function's role."""
        return ["--read", f"s3://{self.input_bucket}/",
                "--read", f"s3://{self.output_bucket}/{ENCODINGS_KEY.rsplit('/', 1)[0]}/",
                "--write", f"s3://{self.output_bucket}/",
                "--dynamodb-read", self.table,
                "--sqs-send", self.failed_queue]  # fmt: skip

    def function_env(self, event_modules: str) -> dict[str, str]:
        """The variables the app (app.py) and the event router need on the function."""
        return {
            "CLASSROOM_INPUT_BUCKET": self.input_bucket,
            "CLASSROOM_OUTPUT_BUCKET": self.output_bucket,
            "CLASSROOM_TABLE": self.table,
            "CLASSROOM_ENCODINGS": self.encodings_uri,
            "CLASSROOM_SUFFIX": self.suffix,
            "LAMBDAFLOW_EVENT_MODULES": event_modules,
            **self.extra_env,
        }


def load_students(path: Path) -> list[dict]:
    """Read and check student_data.json: a list of {"id", "name", "major", "year"}."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"students file {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(records, list):
        raise SystemExit(f"students file {path}: expected a JSON list of records")
    for i, rec in enumerate(records):
        missing = {"id", "name", "major", "year"} - set(rec if isinstance(rec, dict) else ())
        if missing:
            raise SystemExit(f"students file {path}: record #{i} lacks {sorted(missing)}")
    return records


def _create_bucket(s3: Any, name: str, region: str, tags: dict[str, str]) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name,
                             CreateBucketConfiguration={"LocationConstraint": region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_tagging(Bucket=name, Tagging={
        "TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})  # fmt: skip


def create_table(dynamodb: Any, table: str, students: list[dict],
                 tags: dict[str, str] | None = None) -> None:
    try:
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
        dynamodb.get_waiter("table_exists").wait(TableName=table)
    except dynamodb.exceptions.ResourceInUseException:
        pass
    for i in range(0, len(students), 25):
        dynamodb.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {
                "name": {"S": str(s["name"])}, "id": {"N": str(s["id"])},
                "major": {"S": str(s["major"])}, "year": {"S": str(s["year"])}}}}
            for s in students[i:i + 25]]})
    log.info("table %s: %d students", table, len(students))


def common(s3: Any, dynamodb: Any, names: Names, students: list[dict], encodings: Path,
           region: str) -> None:
    for bucket in (names.input_bucket, names.output_bucket):
        _create_bucket(s3, bucket, region, names.tags)
    create_table(dynamodb, names.table, students, names.tags)
    s3.put_object(Bucket=names.output_bucket, Key=ENCODINGS_KEY,
                  Body=Path(encodings).read_bytes())
    log.info("encodings uploaded to %s", names.encodings_uri)


def setup_local(s3: Any, dynamodb: Any, sqs: Any, names: Names, students: list[dict],
                encodings: Path, region: str = "us-east-1") -> str:
    """Buckets, table, encodings, the notification queue with its dead-letter queue
    (``names.failed_queue``, after 3 receives) and S3 -> SQS; returns the queue URL."""
    common(s3, dynamodb, names, students, encodings, region)
    url = sqs.create_queue(QueueName=names.queue, tags=names.tags,
                           Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    dlq = sqs.create_queue(QueueName=names.failed_queue, tags=names.tags)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps({
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"})})
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    s3.put_bucket_notification_configuration(
        Bucket=names.input_bucket,
        NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": names.suffix}]}},
        }]})
    log.info("s3://%s uploads notify %s", names.input_bucket, url)
    return url


def setup_aws(session: Any, names: Names, students: list[dict], encodings: Path,
              function: str, event_modules: str) -> None:
    """Buckets, table, encodings, the failure queue as the function's on-failure
    destination, S3 -> Lambda notification (this bucket, this account) and the
    function's env."""
    region = session.region_name
    s3, lam, sqs = session.client("s3"), session.client("lambda"), session.client("sqs")
    account = session.client("sts").get_caller_identity()["Account"]
    common(s3, session.client("dynamodb"), names, students, encodings, region)
    failed = sqs.create_queue(QueueName=names.failed_queue, tags=names.tags)["QueueUrl"]
    failed_arn = sqs.get_queue_attributes(QueueUrl=failed, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]  # fmt: skip
    config = lam.get_function_configuration(FunctionName=function)
    env = dict(config.get("Environment", {}).get("Variables", {}))
    env.update(names.function_env(event_modules))
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": env})
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    # Needs sqs:SendMessage on the queue in the function's role (--sqs-send; AWS checks).
    lam.put_function_event_invoke_config(
        FunctionName=function, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=6 * 3600,
        DestinationConfig={"OnFailure": {"Destination": failed_arn}})
    try:
        lam.add_permission(
            FunctionName=function, StatementId=f"s3-{names.input_bucket}",
            Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
            SourceArn=f"arn:aws:s3:::{names.input_bucket}", SourceAccount=account)
    except lam.exceptions.ResourceConflictException:
        pass
    s3.put_bucket_notification_configuration(
        Bucket=names.input_bucket,
        NotificationConfiguration={"LambdaFunctionConfigurations": [{
            "LambdaFunctionArn": config["FunctionArn"], "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": names.suffix}]}},
        }]})
    log.info("s3://%s uploads invoke %s", names.input_bucket, function)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--aws", action="store_true",
                   help="set up on AWS (local runs use run_local.py)")
    p.add_argument("--print-deploy-flags", action="store_true",
                   help="print the `lambdaflow deploy` grants the app needs, and exit")
    p.add_argument("--function", help="the deployed worker function")
    p.add_argument("--students", type=Path)
    p.add_argument("--encodings", type=Path)
    p.add_argument("--deployment", default="lambdaflow",
                   help="tag everything for `lambdaflow destroy --name` (default lambdaflow)")
    p.add_argument("--input-bucket", default=Names.input_bucket)
    p.add_argument("--output-bucket", default=Names.output_bucket)
    p.add_argument("--table", default=Names.table)
    p.add_argument("--event-modules", default="classroom_app",
                   help="LAMBDAFLOW_EVENT_MODULES on the function (default classroom_app: "
                        "app.py copied into the image as classroom_app.py)")
    p.add_argument("--region", default=None)
    args = p.parse_args(argv)
    names = Names(args.input_bucket, args.output_bucket, args.table,
                  deployment=args.deployment)
    if args.print_deploy_flags:
        print(" ".join(names.deploy_flags()))
        return 0
    if not (args.aws and args.function and args.students and args.encodings):
        p.error("--aws needs --function, --students and --encodings")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import boto3

    session = boto3.Session(region_name=args.region)
    setup_aws(session, names, load_students(args.students), args.encodings, args.function,
              args.event_modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
