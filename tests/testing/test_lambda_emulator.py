"""The Lambda emulator through boto3's real ``lambda`` client and real awslambdaric
runtimes (handlers in tests/testing/handlers.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lambdaflow.testing.emulator_process import EmulatorProcess
from lambdaflow.testing.lambda_emulator import LambdaEmulator

HANDLERS_DIR = str(Path(__file__).resolve().parent)


def lambda_client(emu):
    """boto3's lambda client, signed with the emulator's per-run key."""
    return emu.client(config=Config(retries={"total_max_attempts": 1}, read_timeout=60))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with LambdaEmulator(
        python_path=[HANDLERS_DIR],
        shared_paths=[str(tmp_path_factory.getbasetemp())],
        memory_limit="rss",
        async_retry_delays_s=(0.05, 0.05),
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator):
    return lambda_client(emulator)


def new_function(emulator, handler: str, **kwargs) -> str:
    name = f"fn-{handler.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:6]}"
    emulator.create_function(name, handler=f"handlers.{handler}", **kwargs)
    return name


def invoke(client, name: str, event=None, **kwargs) -> tuple[dict, object]:
    resp = client.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), **kwargs
    )
    return resp, json.loads(resp["Payload"].read() or b"null")


def wait_until(predicate, what: str, limit_s: float = 30.0) -> None:
    """Poll a condition (a guard against hangs, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_sync_invoke_returns_handler_result(emulator, client):
    name = new_function(emulator, "echo", env={"HANDLER_EXTRA": "from-env"})
    resp, body = invoke(client, name, {"x": [1, 2]})
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert body["event"] == {"x": [1, 2]}
    assert body["function"] == name
    assert body["extra"] == "from-env"
    assert (
        resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        == body["request_id"]
    )


def test_sequential_invokes_reuse_the_warm_environment(emulator, client):
    name = new_function(emulator, "echo")
    envs = [invoke(client, name)[1]["env_id"] for _ in range(4)]
    assert len(set(envs)) == 1
    stats = emulator.stats()["functions"][name]
    assert stats["cold_starts"] == 1 and stats["invocations"] == 4


def test_concurrency_limit_cold_starts_then_429(emulator, client, tmp_path):
    name = new_function(emulator, "wait_for_file", concurrency=2, timeout_s=30)
    gate = tmp_path / "gate"
    results = []

    def hold() -> None:
        results.append(invoke(client, name, {"path": str(gate)})[1])

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(
            lambda: emulator.stats()["functions"][name]["busy"] == 2,
            "2 busy environments",
        )
        with pytest.raises(client.exceptions.TooManyRequestsException) as info:
            invoke(client, name, {"path": str(gate)})
    finally:
        gate.touch()
        for t in threads:
            t.join()
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert error["retryAfterSeconds"] == "1"
    assert len({r["env_id"] for r in results}) == 2
    stats = emulator.stats()["functions"][name]
    assert stats["cold_starts"] == 2 and stats["throttles"] == 1
    # both environments are warm now: two more calls start nothing new
    for _ in range(2):
        invoke(client, name, {"path": str(gate)})
    assert emulator.stats()["functions"][name]["cold_starts"] == 2


def test_timeout_kills_the_environment_and_reports_unhandled(emulator, client):
    name = new_function(emulator, "sleep", timeout_s=0.5)
    first = invoke(client, name, {"seconds": 0.0})[1]["env_id"]
    resp, body = invoke(client, name, {"seconds": 30}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.50 seconds" in body["errorMessage"]
    assert (
        "Task timed out after 0.50 seconds"
        in base64.b64decode(resp["LogResult"]).decode()
    )
    after = invoke(client, name, {"seconds": 0.0})[1]["env_id"]
    assert after != first
    stats = emulator.stats()
    assert stats["functions"][name]["timeouts"] == 1
    killed = [
        e for e in stats["environments"] if e["env_id"] == first.rsplit("]", 1)[1]
    ]
    wait_until(lambda: _gone(killed[0]["pid"]), "the timed-out environment to exit")


def test_crashed_runtime_is_unhandled_and_replaced(emulator, client):
    name = new_function(emulator, "crash")
    first = invoke(client, name, {"crash": False})[1]["env_id"]
    resp, body = invoke(client, name, {"crash": True, "code": 3})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
    resp, body = invoke(client, name, {"crash": False})
    assert "FunctionError" not in resp and body["env_id"] != first
    assert emulator.stats()["functions"][name]["crashes"] == 1


def test_handler_exception_is_unhandled_with_error_type(emulator, client):
    name = new_function(emulator, "fail")
    resp, body = invoke(client, name, {"value": 42})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad input: 42"
    assert any("raise ValueError" in line for line in body["stackTrace"])
    # the environment survives a handler exception
    assert invoke(client, name, {"value": 1})[1]["errorType"] == "ValueError"
    assert emulator.stats()["functions"][name]["cold_starts"] == 1


def test_missing_handler_reports_the_init_error(emulator, client):
    name = new_function(emulator, "does_not_exist")
    resp, body = invoke(client, name)
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.HandlerNotFound"


def test_payload_over_6_mb_is_refused_with_413(emulator, client):
    name = new_function(emulator, "echo")
    with pytest.raises(client.exceptions.ClientError) as info:
        client.invoke(FunctionName=name, Payload=b'"' + b"x" * (7 * 1024 * 1024) + b'"')
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert emulator.stats()["functions"][name]["invocations"] == 0


def test_payloads_near_the_limit_round_trip(emulator, client):
    name = new_function(emulator, "echo")
    data = "y" * (5 * 1024 * 1024)
    assert invoke(client, name, {"data": data})[1]["event"]["data"] == data
    name = new_function(emulator, "big")
    resp, body = invoke(client, name, {"n": 5 * 1024 * 1024})
    assert "FunctionError" not in resp and len(body) == 5 * 1024 * 1024


def test_response_over_6_mb_is_a_function_error(emulator, client):
    name = new_function(emulator, "big")
    resp, body = invoke(client, name, {"n": 7 * 1024 * 1024})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    # as on AWS the environment exits; a fresh one serves the next invoke
    assert invoke(client, name, {"n": 3})[1] == "xxx"
    envs = [e for e in emulator.stats()["environments"] if e["function"] == name]
    assert [e["state"] for e in envs] == ["dead", "returning"] or [
        e["state"] for e in envs
    ] == ["dead", "idle"]


def test_log_tail_carries_the_handler_output(emulator, client):
    name = new_function(emulator, "chatty")
    resp, body = invoke(client, name, {"word": "pelican"}, LogType="Tail")
    assert body == "ok"
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "hello from the handler: pelican" in log
    assert log.startswith("START RequestId:") and "REPORT RequestId:" in log
    assert len(log.encode()) <= 4096


def test_http_layer_chunked_expect_continue_and_bad_requests(emulator):
    host, port = emulator.endpoint_url.rsplit("/", 1)[1].split(":")
    body = json.dumps({"name": "chunked", "handler": "handlers.echo"}).encode()
    auth = "".join(
        f"{k}: {v}\r\n"
        for k, v in sign(emulator, "POST", "/_emulator/functions", body).items()
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /_emulator/functions HTTP/1.1\r\n" + auth +
            b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        half = len(body) // 2
        for part in (body[:half], body[half:]):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        # keep-alive: the same connection serves the next request; a bad one closes it
        sock.sendall(b"GET /x HTTP/1.1\r\nContent-Length: many\r\n\r\n")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400") and b"Connection: close" in reply
        assert sock.recv(65536) == b""
    assert emulator.stats()["functions"]["chunked"]["invocations"] == 0


def sign(emu, method: str, path: str, body: bytes, credential=None) -> dict:
    """SigV4 headers (Host included) for a raw request to the emulator."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    cred = credential or emu.credentials
    request = AWSRequest(method=method, url=emu.endpoint_url + path, data=body)
    SigV4Auth(
        Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
        "lambda",
        "us-east-1",
    ).add_auth(request)
    return {"Host": emu.endpoint_url.split("//", 1)[1], **dict(request.headers.items())}


def raw_post(emu, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    import http.client

    host, port = emu.endpoint_url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_invoke_api_refuses_unsigned_and_foreign_requests(emulator, tmp_path):
    """An unsigned POST carrying a task (fn_bytes) ran code before; now Lambda's 403s."""
    import cloudpickle

    from lambdaflow.testing.sigv4 import Credential

    marker = tmp_path / "ran"
    name = new_function(emulator, "record")
    path = f"/2015-03-31/functions/{name}/invocations"
    evil = json.dumps({
        "path": str(marker), "marker": "evil",
        "fn_bytes": base64.b64encode(cloudpickle.dumps(print)).decode(),
    }).encode()  # fmt: skip
    status, headers, body = raw_post(emulator, path, evil, {})
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    stranger = Credential.generate("stranger")
    status, headers, _ = raw_post(
        emulator, path, evil, sign(emulator, "POST", path, evil, stranger)
    )
    assert (status, headers["x-amzn-ErrorType"]) == (403, "UnrecognizedClientException")
    forged = Credential(emulator.credentials.access_key_id, "x" * 40)  # right id, wrong key
    status, headers, _ = raw_post(
        emulator, path, evil, sign(emulator, "POST", path, evil, forged)
    )
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    good = sign(emulator, "POST", path, b'{"path": "x", "marker": "y"}')
    status, headers, _ = raw_post(emulator, path, evil, good)  # body swapped after signing
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    with pytest.raises(ClientError, match="UnrecognizedClientException"):
        boto3.client(
            "lambda", endpoint_url=emulator.endpoint_url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).invoke(FunctionName=name, Payload=evil)  # fmt: skip
    assert not marker.exists()
    assert emulator.stats()["functions"][name]["invocations"] == 0


def test_runtime_api_answers_only_its_own_environment(emulator, client, tmp_path):
    """Knowing an environment's Runtime API port is not enough to take its invocations."""
    import http.client

    name = new_function(emulator, "wait_for_file", timeout_s=20)
    release = tmp_path / "release"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(invoke(client, name, {"path": str(release)})[1])
    )
    thread.start()
    try:
        wait_until(
            lambda: emulator.stats()["functions"][name]["busy"] == 1, "a busy environment"
        )
        env = next(
            e for e in emulator.stats()["environments"] if e["function"] == name
        )
        host, port = env["runtime_api"].split(":")
        for method, target in (
            ("GET", "/2018-06-01/runtime/invocation/next"),
            ("POST", "/2018-06-01/runtime/invocation/whatever/response"),
        ):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request(method, target, body=b"{}" if method == "POST" else None)
            resp = conn.getresponse()
            assert resp.status == 403, (method, resp.status)
            assert b"AccessDeniedException" in resp.read()
            conn.close()
    finally:
        release.write_text("go")
        thread.join(30)
    assert result["env_id"].endswith(env["env_id"])  # the real runtime got its answer
    assert emulator.stats()["functions"][name]["runtime_refused"] == 2


def test_reserved_environment_keys_are_refused(emulator, client):
    name = new_function(emulator, "echo")
    for variables in ({"AWS_ACCESS_KEY_ID": "x"}, {"AWS_REGION": "eu-west-1", "OK": "1"}):
        with pytest.raises(ClientError, match="reserved keys") as info:
            client.update_function_configuration(
                FunctionName=name, Environment={"Variables": variables}
            )
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError, match="AWS_SESSION_TOKEN"):
        client.create_function(
            FunctionName="reserved-keys", Role="arn:aws:iam::123456789012:role/r",
            PackageType="Image", Code={"ImageUri": "x"},
            Environment={"Variables": {"AWS_SESSION_TOKEN": "t"}},
        )  # fmt: skip
    with pytest.raises(ValueError, match="reserved keys"):
        emulator.create_function("reserved-py", env={"_HANDLER": "x"})
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"HANDLER_EXTRA": "updated"}}
    )
    assert invoke(client, name)[1]["extra"] == "updated"


def test_unknown_function_is_resource_not_found(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="no-such-function")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")


def test_control_plane_through_boto3(emulator, client):
    name = f"cp-{uuid.uuid4().hex[:6]}"
    created = client.create_function(
        FunctionName=name,
        Role="arn:aws:iam::123456789012:role/r",
        PackageType="Image",
        Code={"ImageUri": "lambdaflow:latest"},
        Timeout=5,
        MemorySize=256,
        ImageConfig={"Command": ["handlers.echo"]},
        Environment={"Variables": {"HANDLER_EXTRA": "image"}},
    )
    assert created["Handler"] == "handlers.echo" and created["MemorySize"] == 256
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    got = client.get_function(FunctionName=name)
    assert got["Configuration"]["Timeout"] == 5
    assert got["Concurrency"]["ReservedConcurrentExecutions"] == 3
    assert name in {f["FunctionName"] for f in client.list_functions()["Functions"]}
    assert invoke(client, name)[1]["extra"] == "image"
    with pytest.raises(client.exceptions.ResourceConflictException):
        client.create_function(
            FunctionName=name,
            Role="arn:aws:iam::123456789012:role/r",
            PackageType="Image",
            Code={"ImageUri": "x"},
        )
    client.delete_function(FunctionName=name)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName=name)


def test_async_event_invoke_runs_and_retries_twice(emulator, client, tmp_path):
    name = new_function(emulator, "record")
    ok, failing = tmp_path / "ok.txt", tmp_path / "fail.txt"
    resp = client.invoke(
        FunctionName=name,
        InvocationType="Event",
        Payload=json.dumps({"path": str(ok), "marker": "a"}).encode(),
    )
    assert resp["StatusCode"] == 202
    client.invoke(
        FunctionName=name,
        InvocationType="Event",
        Payload=json.dumps(
            {"path": str(failing), "marker": "b", "fail": True}
        ).encode(),
    )
    wait_until(lambda: ok.exists(), "the async invocation")
    wait_until(
        lambda: emulator.stats()["functions"][name]["async_dropped"] == 1, "retries"
    )
    lines = failing.read_text().splitlines()
    assert (
        len(lines) == 3 and len({line.split()[1] for line in lines}) == 1
    )  # same request id
    assert emulator.stats()["functions"][name]["async_retries"] == 2


def test_memory_over_the_limit_is_out_of_memory(emulator, client):
    name = new_function(emulator, "hog", memory_mb=128, timeout_s=30)
    resp, body = invoke(client, name, {"mb": 400, "hold_s": 20})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert body["errorMessage"].endswith("Runtime exited with error: signal: killed")


@pytest.mark.parametrize("kind", [LambdaEmulator, EmulatorProcess])
def test_rlimit_memory_limit_raises_memory_error_in_the_handler(kind):
    """Also in a child process: every option reaches it (``rlimit_headroom_mb`` was
    not even accepted by EmulatorProcess when it kept its own copy of the list)."""
    with kind(
        python_path=[HANDLERS_DIR], memory_limit="rlimit", rlimit_headroom_mb=512
    ) as emu:
        emu.create_function("hog", handler="handlers.hog", memory_mb=128)
        resp, body = invoke(
            lambda_client(emu), "hog", {"mb": 2048, "hold_s": 0}
        )
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "MemoryError"


def test_stop_leaves_no_processes_behind():
    emu = LambdaEmulator(python_path=[HANDLERS_DIR]).start()
    client = lambda_client(emu)
    emu.create_function("busy", handler="handlers.sleep", timeout_s=30)
    emu.create_function("idle", handler="handlers.echo")
    invoke(client, "idle")
    thread = threading.Thread(
        target=lambda: _swallow(invoke, client, "busy", {"seconds": 30})
    )
    thread.start()
    wait_until(
        lambda: emu.stats()["functions"]["busy"]["busy"] == 1, "a busy environment"
    )
    pids = [e["pid"] for e in emu.stats()["environments"]]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    emu.stop()
    thread.join()
    assert not [p for p in pids if not _gone(p)]


def test_emulator_process_has_the_same_api_and_its_environments_die_with_it():
    emu = EmulatorProcess(python_path=[HANDLERS_DIR]).start()
    try:
        emu.create_function("f", handler="handlers.sleep", timeout_s=0.5)
        client = lambda_client(emu)
        assert "FunctionError" not in invoke(client, "f", {"seconds": 0})[0]
        assert invoke(client, "f", {"seconds": 5})[1]["errorType"] == "Sandbox.Timedout"
        body = invoke(client, "f", {"seconds": 0})[1]
        stats = emu.stats()
        assert stats["functions"]["f"]["timeouts"] == 1
        assert stats["functions"]["f"]["cold_starts"] == 2
        emu.delete_function("f")
        with pytest.raises(KeyError):
            emu.delete_function("f")
        emu.create_function("g", handler="handlers.echo")
        pid = invoke(client, "g")[1]["pid"]
        # killed outright, the emulator never cleans up: PDEATHSIG takes the environment
        os.kill(emu.pid, signal.SIGKILL)
    finally:
        emu.stop()
    assert body["slept"] == 0
    wait_until(lambda: _gone(pid), "PDEATHSIG to kill the environment")


def _swallow(fn, *args):
    """Run ``fn``; the emulator stopping under it breaks its connection."""
    with contextlib.suppress(BotoCoreError, ClientError):
        fn(*args)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_tmp_follows_ephemeral_storage_and_code_dir_is_read_only(tmp_path):
    with LambdaEmulator(python_path=[HANDLERS_DIR], task_root=str(tmp_path)) as emu:
        client = lambda_client(emu)
        (tmp_path / "outside-marker").write_text("host /tmp is not the function's")
        client.create_function(
            FunctionName="storage", Role="arn:aws:iam::123456789012:role/r",
            PackageType="Image", Code={"ImageUri": "x"},
            ImageConfig={"Command": ["handlers.storage"]}, MemorySize=256, Timeout=60,
            EphemeralStorage={"Size": 512},
        )  # fmt: skip
        within = invoke(client, "storage", {"mb": 400})[1]
        beyond = invoke(client, "storage", {"mb": 600})[1]
        client.update_function_configuration(
            FunctionName="storage", EphemeralStorage={"Size": 1024}
        )
        with pytest.raises(ClientError, match="EphemeralStorage"):
            client.update_function_configuration(
                FunctionName="storage", EphemeralStorage={"Size": 20480}
            )
    assert within["tmp"] == "ok" and beyond.get("tmp") == "ENOSPC", (within, beyond)
    assert within["code_dir"] == "EROFS"
    assert not (tmp_path / "written-by-fn").exists()
    # /tmp is private: only the (shared) task root shows through
    assert "outside-marker" not in within["tmp_entries"]


def test_memory_limit_covers_child_processes(emulator, client):
    name = new_function(emulator, "hog_child", memory_mb=128, timeout_s=20)
    resp, body = invoke(client, name, {"mb": 400})
    assert resp.get("FunctionError") == "Unhandled", body
    assert body["errorType"] == "Runtime.OutOfMemory"


def test_account_pool_is_shared_and_429_names_its_cause(tmp_path):
    """Lambda's account model: reserved functions own their share; the others share
    the rest; each 429 says which limit was hit."""
    release = tmp_path / "release"
    with LambdaEmulator(
        python_path=[HANDLERS_DIR], account_concurrency=3, min_unreserved=1,
        shared_paths=[str(tmp_path)],
    ) as emu:  # fmt: skip
        client = lambda_client(emu)
        for name in ("tier-a", "tier-b", "reserved"):
            emu.create_function(name, handler="handlers.wait_for_file", timeout_s=20)
        client.put_function_concurrency(
            FunctionName="reserved", ReservedConcurrentExecutions=1
        )
        with pytest.raises(ClientError, match="below its minimum value of \\[1\\]"):
            client.put_function_concurrency(
                FunctionName="tier-a", ReservedConcurrentExecutions=2
            )
        threads = [
            threading.Thread(
                target=invoke, args=(client, n, {"path": str(release)})
            )
            for n in ("tier-a", "tier-b", "reserved")
        ]
        for t in threads:
            t.start()
        wait_until(
            lambda: sum(f["busy"] for f in emu.stats()["functions"].values()) == 3,
            "three busy environments",
        )
        reasons = {}
        for name in ("tier-a", "reserved"):
            with pytest.raises(ClientError) as info:
                invoke(client, name, {"path": str(release)})
            reasons[name] = info.value.response["Reason"]
        release.write_text("go")
        for t in threads:
            t.join(30)
        # tier-a's idle environment is reclaimed when tier-b needs the pool's last slot
        invoke(client, "tier-b", {"path": str(release)})
        invoke(client, "tier-b", {"path": str(release)})
    assert reasons == {
        "tier-a": "ConcurrentInvocationLimitExceeded",
        "reserved": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }


def test_idle_environments_are_reclaimed(tmp_path):
    with LambdaEmulator(python_path=[HANDLERS_DIR], idle_timeout_s=0.5) as emu:
        client = lambda_client(emu)
        emu.create_function("idle", handler="handlers.echo")
        first = invoke(client, "idle")[1]["env_id"]
        wait_until(
            lambda: emu.stats()["functions"]["idle"]["idle_reclaimed"] == 1, "a reclaim"
        )
        assert emu.stats()["functions"]["idle"]["environments"] == 0
        assert invoke(client, "idle")[1]["env_id"] != first  # a cold start again


def test_async_events_honour_retry_attempts_and_maximum_age(tmp_path):
    path = tmp_path / "log"
    with LambdaEmulator(
        python_path=[HANDLERS_DIR], async_retry_delays_s=(0.05, 0.05),
        shared_paths=[str(tmp_path)],
    ) as emu:  # fmt: skip
        client = lambda_client(emu)
        emu.create_function("once", handler="handlers.record")
        client.put_function_event_invoke_config(
            FunctionName="once", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60
        )
        event = {"path": str(path), "marker": "m", "fail": True}
        client.invoke(
            FunctionName="once", InvocationType="Event", Payload=json.dumps(event)
        )
        wait_until(lambda: emu.stats()["functions"]["once"]["async_dropped"] == 1, "drop")
        with pytest.raises(ClientError, match="MaximumRetryAttempts"):
            client.put_function_event_invoke_config(
                FunctionName="once", MaximumRetryAttempts=3
            )
    assert len(path.read_text().splitlines()) == 1  # no retry with 0 attempts


def test_default_async_retry_schedule_is_lambdas():
    from lambdaflow.testing.lambda_emulator import LambdaEmulator as Emu

    emu = Emu()
    assert emu.options.async_retry_delays_s == (60.0, 120.0)


def test_async_events_older_than_the_maximum_age_are_dropped(tmp_path):
    """An event queued behind a busy environment longer than MaximumEventAgeInSeconds
    is dropped, not run (the API's minimum is 60 s; the test shortens it in place)."""
    release, log = tmp_path / "release", tmp_path / "log"
    with LambdaEmulator(python_path=[HANDLERS_DIR], shared_paths=[str(tmp_path)]) as emu:
        client = lambda_client(emu)
        emu.create_function("aged", handler="handlers.wait_for_file", concurrency=1,
                            timeout_s=20)  # fmt: skip
        emu._call(lambda: setattr(emu.core.functions["aged"].config, "max_event_age_s", 0.3))
        holder = threading.Thread(target=invoke, args=(client, "aged", {"path": str(release)}))
        holder.start()
        wait_until(lambda: emu.stats()["functions"]["aged"]["busy"] == 1, "a busy env")
        client.invoke(FunctionName="aged", InvocationType="Event",
                      Payload=json.dumps({"path": str(log)}))  # fmt: skip
        time.sleep(0.6)  # the event ages past 0.3 s while the only environment is busy
        release.write_text("go")
        holder.join(30)
        wait_until(lambda: emu.stats()["functions"]["aged"]["async_expired"] == 1, "expiry")
        assert emu.stats()["functions"]["aged"]["invocations"] == 1
