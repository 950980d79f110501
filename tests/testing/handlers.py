"""Lambda handlers for the emulator tests (imported by awslambdaric in the environments)."""

from __future__ import annotations

import os
import time


def echo(event, context):
    """Return the event with the environment's identity."""
    return {
        "event": event,
        "env_id": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "extra": os.environ.get("HANDLER_EXTRA"),
    }


def noop(event, context):
    """Nothing (the benchmark's task); ``{"sleep": s}`` holds the environment busy."""
    if event:
        time.sleep(float(event.get("sleep", 0)))


def sleep(event, context):
    time.sleep(float(event.get("seconds", 1.0)))
    return {
        "slept": event.get("seconds", 1.0),
        "env_id": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
    }


def fail(event, context):
    raise ValueError(f"bad input: {event.get('value')}")


def crash(event, context):
    if event.get("crash", True):
        os._exit(int(event.get("code", 3)))
    return {"env_id": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}


def chatty(event, context):
    print(f"hello from the handler: {event.get('word')}")
    return "ok"


def hog(event, context):
    """Allocate and touch ``mb`` megabytes."""
    block = bytearray(int(event.get("mb", 300)) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(float(event.get("hold_s", 1.0)))
    return len(block)


def record(event, context):
    """Append the event's marker to a file (async-invoke test)."""
    with open(event["path"], "a") as fh:
        fh.write(f"{event['marker']} {context.aws_request_id}\n")
    if event.get("fail"):
        raise RuntimeError("failing on purpose")
    return "ok"


def s3_roundtrip(event, context):
    """Write an object with boto3's default endpoint resolution (AWS_ENDPOINT_URL_S3)."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=event["bucket"], Key=event["key"], Body=b"from the environment"
    )
    denied = None
    if event.get("outside_key"):  # a key the role's policy does not cover
        try:
            s3.put_object(Bucket=event["bucket"], Key=event["outside_key"], Body=b"x")
        except ClientError as exc:
            denied = exc.response["Error"]["Code"]
    identity = boto3.client("sts").get_caller_identity()["Arn"]
    return {
        "denied": denied,
        "identity": identity,
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "lambda_endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
        "s3_endpoint": os.environ.get("AWS_ENDPOINT_URL_S3"),
        "lambdaflow_s3_endpoint": os.environ.get("LAMBDAFLOW_S3_ENDPOINT_URL"),
        "region": os.environ.get("AWS_REGION"),
        "memory": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
    }


def big(event, context):
    """Return a string of ``n`` bytes."""
    return "x" * int(event["n"])


def wait_for_file(event, context):
    """Block until ``path`` exists (at most 30 s): holds an environment busy."""
    deadline = time.monotonic() + 30
    while not os.path.exists(event["path"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"env_id": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}


def storage(event, context):
    """Write ``mb`` MB to /tmp and one byte into the code directory; report errnos."""
    import errno

    out = {"tmp_entries": sorted(os.listdir("/tmp"))}
    try:
        with open("/tmp/fill", "wb") as fh:
            for _ in range(int(event["mb"])):
                fh.write(b"\0" * 2**20)
        out["tmp"] = "ok"
    except OSError as exc:
        out["tmp"] = errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        if os.path.exists("/tmp/fill"):
            os.remove("/tmp/fill")
    try:
        with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "written-by-fn"), "w") as fh:
            fh.write("x")
        out["code_dir"] = "ok"
    except OSError as exc:
        out["code_dir"] = errno.errorcode.get(exc.errno, str(exc.errno))
    return out


def hog_child(event, context):
    """A child process allocates ``mb`` MB (the parent stays small)."""
    import subprocess
    import sys

    code = f"b = bytearray({int(event['mb'])} * 2**20)\nimport time\ntime.sleep(5)\n"
    subprocess.run([sys.executable, "-c", code], check=False)
    return "survived"
