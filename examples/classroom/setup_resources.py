"""Create what the classroom app needs: buckets, the students table, the known-faces
file, the upload notification and the function's environment.

    # AWS (the worker function already deployed with `lambdaflow deploy`, its image
    # containing app.py; see README.md)
    python examples/classroom/setup_resources.py --aws --function NAME \\
        --students student_data.json --encodings encoding

    # local stand-ins: run_local.py calls setup_local() itself

Steps (each idempotent, so a re-run updates rather than fails):

1. input and output buckets;
2. DynamoDB table ``name`` (string hash key, on demand) filled from student_data.json;
3. the ``encoding`` file uploaded to ``s3://OUTPUT/config/encoding``;
4. notification: locally S3 -> SQS queue (moto server delivers there; the bridge in
   lambdaflow.events takes it to the Lambda emulator); on AWS S3 -> Lambda directly
   (with the ``lambda:InvokeFunction`` permission for s3.amazonaws.com);
5. on AWS, the function's environment gains the CLASSROOM_* and LAMBDAFLOW_EVENT_MODULES
   variables (locally they are passed when the emulated function is created).
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

ENCODINGS_KEY = "config/encoding"


@dataclass(frozen=True)
class Names:
    input_bucket: str = "classroom-input"
    output_bucket: str = "classroom-output"
    table: str = "classroom-students"
    queue: str = "classroom-uploads"
    suffix: str = ".mp4"
    extra_env: dict = field(default_factory=dict)

    @property
    def encodings_uri(self) -> str:
        return f"s3://{self.output_bucket}/{ENCODINGS_KEY}"

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


def _create_bucket(s3: Any, name: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name,
                             CreateBucketConfiguration={"LocationConstraint": region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def create_table(dynamodb: Any, table: str, students: list[dict]) -> None:
    try:
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}])
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
        _create_bucket(s3, bucket, region)
    create_table(dynamodb, names.table, students)
    s3.put_object(Bucket=names.output_bucket, Key=ENCODINGS_KEY,
                  Body=Path(encodings).read_bytes())
    log.info("encodings uploaded to %s", names.encodings_uri)


def setup_local(s3: Any, dynamodb: Any, sqs: Any, names: Names, students: list[dict],
                encodings: Path, region: str = "us-east-1") -> str:
    """Buckets, table, encodings, and S3 -> SQS notification; returns the queue URL."""
    common(s3, dynamodb, names, students, encodings, region)
    url = sqs.create_queue(QueueName=names.queue,
                           Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
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
    """Buckets, table, encodings, S3 -> Lambda notification and the function's env."""
    region = session.region_name
    s3, lam = session.client("s3"), session.client("lambda")
    common(s3, session.client("dynamodb"), names, students, encodings, region)
    config = lam.get_function_configuration(FunctionName=function)
    env = dict(config.get("Environment", {}).get("Variables", {}))
    env.update(names.function_env(event_modules))
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": env})
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    try:
        lam.add_permission(
            FunctionName=function, StatementId=f"s3-{names.input_bucket}",
            Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
            SourceArn=f"arn:aws:s3:::{names.input_bucket}")
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
    p.add_argument("--aws", action="store_true", required=True,
                   help="set up on AWS (local runs use run_local.py)")
    p.add_argument("--function", required=True, help="the deployed worker function")
    p.add_argument("--students", required=True, type=Path)
    p.add_argument("--encodings", required=True, type=Path)
    p.add_argument("--input-bucket", default=Names.input_bucket)
    p.add_argument("--output-bucket", default=Names.output_bucket)
    p.add_argument("--table", default=Names.table)
    p.add_argument("--event-modules", default="classroom_app",
                   help="LAMBDAFLOW_EVENT_MODULES on the function (default classroom_app: "
                        "app.py copied into the image as classroom_app.py)")
    p.add_argument("--region", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import boto3

    names = Names(args.input_bucket, args.output_bucket, args.table)
    session = boto3.Session(region_name=args.region)
    setup_aws(session, names, load_students(args.students), args.encodings, args.function,
              args.event_modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
