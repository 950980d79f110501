"""The lambda backend against local_aws (moto server + the Lambda emulator running the
real awslambdaric): throttling, spilling, crashes, timeouts, cold/warm starts, cleanup,
and configuration errors. The whole conformance suite also runs on it (tests/conformance).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow.errors import LambdaThrottledError
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@lf.remote
def nap(x, seconds=0.2):
    time.sleep(seconds)
    return x


@lf.remote
def echo(x):
    return x


@lf.remote
def nbytes(a):
    return int(a.nbytes)


@lf.remote(max_retries=0)
def crash():
    os._exit(7)


@pytest.fixture(scope="module")
def small_aws():
    """A function with reserved concurrency 2 and a 30 s timeout: an environment's first
    task imports this module (numpy, pytest) to unpickle its function, which took 1.6 s
    on a quiet machine and ran past the 6 s this once was on a loaded one (a timeout is
    never retried). The tests of timeouts make their own short-timeout functions."""
    from lambdaflow.testing.aws_local import local_aws

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with local_aws(concurrency=2, timeout_s=30, python_path=[ROOT]) as aws:
            yield aws
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def small(small_aws, fresh):
    with lf.init(backend="lambda", **dict(small_aws.config, max_concurrency=8)) as rt:
        yield rt


def test_throttling_is_absorbed_and_counted(small, small_aws):
    name = small_aws.config["function_name"]
    before = settle(small_aws, name)["throttles"]
    refs = [nap.remote(i, 0.1) for i in range(40)]
    assert lf.get(refs) == list(range(40))
    summary = lf.stats().summary()
    assert summary["throttles"] > 0, "8 invokers against concurrency 2 must see 429s"
    assert summary["tasks"] == 40 and small.backend.throttles == summary["throttles"]
    # ... counted exactly: the emulator answered that many 429s, no more, no fewer.
    assert settle(small_aws, name)["throttles"] - before == summary["throttles"]


def test_cold_and_warm_starts(small):
    lf.get([nap.remote(i, 0.0) for i in range(10)])
    records = lf.stats().records
    cold = [r for r in records if r["cold_start"]]
    warm = [r for r in records if not r["cold_start"]]
    assert len(cold) <= 2 and len(warm) >= 8  # at most one cold start per environment
    assert all(r["memory_mb"] for r in records)


def test_spill_10mb_argument_and_result(small):
    arr = np.ones(10 * 2**20 // 8)
    assert lf.get(nbytes.remote(arr)) == arr.nbytes
    back = lf.get(echo.remote(arr))
    assert np.array_equal(back, arr)
    ref = lf.put(arr)
    assert lf.get(nbytes.remote(ref)) == arr.nbytes


def test_crash_is_worker_crashed_with_log_tail(small):
    with pytest.raises(lf.WorkerCrashedError) as info:
        lf.get(crash.remote())
    assert "Unhandled" in str(info.value) or "exit" in str(info.value).lower()
    assert lf.get(echo.remote(1)) == 1  # the next invocation gets a fresh environment


def test_timeout_is_task_timeout_error(small_aws, fresh):
    name = make_function(small_aws, "brief", timeout=6)
    with lf.init(backend="lambda", **dict(small_aws.config, function_name=name)):
        with pytest.raises(lf.TaskTimeoutError, match="timed out after 6"):
            lf.get(nap.options(max_retries=0).remote(1, 10))
        assert lf.get(echo.remote(2)) == 2


def test_shutdown_deletes_the_job_prefix(small_aws, fresh):
    rt = lf.init(backend="lambda", **small_aws.config)
    lf.get(echo.remote(np.ones(100_000)))  # 800 KB result: stored in S3
    s3 = small_aws.client("s3")
    prefix = f"{small_aws.config['prefix']}{rt.job_id}/"
    listed = s3.list_objects_v2(Bucket=small_aws.config["bucket"], Prefix=prefix)
    assert listed.get("KeyCount", 0) > 0
    rt.shutdown()
    listed = s3.list_objects_v2(Bucket=small_aws.config["bucket"], Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0


def test_keep_objects(small_aws, fresh):
    rt = lf.init(backend="lambda", keep_objects=True, **small_aws.config)
    lf.get(echo.remote(np.ones(100_000)))
    rt.shutdown()
    s3 = small_aws.client("s3")
    prefix = f"{small_aws.config['prefix']}{rt.job_id}/"
    assert s3.list_objects_v2(Bucket=small_aws.config["bucket"], Prefix=prefix)["KeyCount"] > 0


def test_missing_function_and_bucket(small_aws, fresh):
    cfg = dict(small_aws.config)
    with pytest.raises(lf.ConfigError, match="no-such-fn.*lambdaflow deploy"):
        lf.init(backend="lambda", **dict(cfg, function_name="no-such-fn"))
    with pytest.raises(lf.ConfigError, match="no-such-bucket"):
        lf.init(backend="lambda", **dict(cfg, bucket="no-such-bucket"))
    with pytest.raises(lf.ConfigError, match="function_name"):
        lf.init(backend="lambda", **dict(cfg, function_name=None))


def test_no_credentials_is_one_clear_line(small_aws, fresh, monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("AWS_") and k != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = {k: v for k, v in small_aws.config.items() if not k.startswith("aws_")}
    with pytest.raises(lf.ConfigError, match="no AWS credentials"):
        lf.init(backend="lambda", **config)


@lf.remote
def memory_size():
    return int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])


def test_memory_mb_routes_to_the_smallest_fitting_tier(small_aws, fresh):
    from lambdaflow.testing.aws_local import LOCAL_IMAGE_URI, LOCAL_ROLE

    lam = small_aws.client("lambda")
    for mb in (1769, 3008):
        lam.create_function(
            FunctionName=f"tiered-{mb}", Role=LOCAL_ROLE, PackageType="Image",
            Code={"ImageUri": LOCAL_IMAGE_URI},
            ImageConfig={"Command": ["lambdaflow.runtime.lambda_entry.lambda_handler"]},
            Timeout=30, MemorySize=mb,
            Environment={"Variables": {**small_aws.function_env(), "PYTHONPATH": ROOT}},
        )
    cfg = dict(small_aws.config, function_name="tiered-1769", memory_tiers="1769,3008")
    with lf.init(backend="lambda", **cfg):
        assert lf.get(memory_size.remote()) == 1769
        assert lf.get(memory_size.options(memory_mb=2000).remote()) == 3008
        with pytest.raises(lf.ConfigError, match="largest deployed tier"):
            lf.get(memory_size.options(memory_mb=9000).remote())


# ---------------------------------------------------------------- issue 13 and 12.10


def make_function(aws, name: str, *, timeout: int = 30, concurrency: int | None = None,
                  handler: str = "lambdaflow.runtime.lambda_entry.lambda_handler") -> str:
    """A function on the emulator, as local_aws creates its own (idempotent)."""
    from lambdaflow.testing.aws_local import LOCAL_IMAGE_URI, LOCAL_ROLE

    lam = aws.client("lambda")
    try:
        lam.create_function(
            FunctionName=name, Role=LOCAL_ROLE, PackageType="Image",
            Code={"ImageUri": LOCAL_IMAGE_URI}, ImageConfig={"Command": [handler]},
            Timeout=timeout, MemorySize=1769,
            Environment={"Variables": {**aws.function_env(), "PYTHONPATH": ROOT}},
        )
    except lam.exceptions.ResourceConflictException:
        pass
    if concurrency is not None:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)
    return name


def counters(aws, name: str) -> dict:
    return aws.emulator.stats()["functions"][name]


def settle(aws, name: str, timeout: float = 30.0) -> dict:
    """The function's counters once none of its environments is busy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = counters(aws, name)
        if c["busy"] == 0:
            return c
        time.sleep(0.1)
    return counters(aws, name)


def test_read_timeout_is_a_task_timeout_and_runs_once(small_aws, fresh):
    """Issue 13.1: with the client timeout below the task's length the body ran 20 times
    (5 re-sends x 4 attempts) and the error said "could not reach Lambda"."""
    name = make_function(small_aws, "slowpoke", timeout=30)
    cfg = dict(small_aws.config, function_name=name, invoke_timeout_s=2)
    with lf.init(backend="lambda", **cfg):
        before = settle(small_aws, name)["invocations"]
        with pytest.raises(lf.TaskTimeoutError, match="not re-sent"):
            lf.get(nap.remote(1, 5))  # max_retries=3 by default
        after = settle(small_aws, name)["invocations"]
    assert after - before == 1


def test_read_timeout_follows_the_function_configuration(small_aws, fresh):
    from lambdaflow import limits
    from lambdaflow.runtime.backends.aws_lambda import READ_MARGIN_S
    from lambdaflow.runtime.lambda_deadline import HARD_STOP_GRACE_S

    name = make_function(small_aws, "slowpoke", timeout=30)
    with lf.init(backend="lambda", **dict(small_aws.config, function_name=name)) as rt:
        fn = rt.backend._function(name)
        assert fn.timeout_s == 30  # what CreateFunction set, read back
        allowance = limits.INIT_ALLOWANCE_S + READ_MARGIN_S
        assert rt.backend.read_timeout(fn) == 30 + allowance
        assert rt.backend.read_timeout(fn, 2) == 2 + HARD_STOP_GRACE_S + allowance


def test_throttling_past_the_budget_is_a_typed_error(small_aws, fresh):
    """Issue 13.3: throttling retried forever. Past retry_budget_s it is a
    LambdaThrottledError naming the function, its and the account's concurrency."""
    name = make_function(small_aws, "tight", concurrency=1)
    cfg = dict(small_aws.config, function_name=name, retry_budget_s=1.0, max_concurrency=4)
    with lf.init(backend="lambda", **cfg):
        refs = [nap.options(max_retries=0).remote(i, 3) for i in range(2)]
        outcomes = []
        for ref in refs:
            try:
                outcomes.append(lf.get(ref))
            except lf.BackendError as exc:
                outcomes.append(exc)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], LambdaThrottledError)
    text = str(errors[0])
    assert "'tight'" in text and "Reserved concurrency: 1" in text
    assert "account concurrency: 1000" in text and "retry_budget_s" in text
    assert errors[0].reserved == 1 and errors[0].account == 1000


def test_reserved_concurrency_zero_fails_at_once(small_aws, fresh):
    name = make_function(small_aws, "frozen", concurrency=0)
    before = counters(small_aws, name)["throttles"]
    with pytest.raises(LambdaThrottledError, match="reserved concurrency 0"):
        lf.init(backend="lambda", **dict(small_aws.config, function_name=name))
    assert counters(small_aws, name)["throttles"] - before == 1


def test_nothing_is_invoked_after_shutdown(small_aws, fresh):
    """Issue 13.3: throttled invocations kept being sent after shutdown()."""
    name = make_function(small_aws, "tight2", concurrency=1)
    cfg = dict(small_aws.config, function_name=name, retry_budget_s=120, max_concurrency=4)
    rt = lf.init(backend="lambda", **cfg)
    [nap.remote(i, 2) for i in range(4)]  # one runs, three are throttled and retry
    deadline = time.monotonic() + 20
    while counters(small_aws, name)["throttles"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    rt.shutdown()
    c = counters(small_aws, name)
    time.sleep(2.5)
    c2 = settle(small_aws, name)
    assert (c2["invocations"], c2["throttles"]) == (c["invocations"], c["throttles"])


def test_5xx_and_resource_not_ready_are_retried(small_aws, fresh, monkeypatch):
    from tests.runtime.backends.netfixtures import ForwardProxy

    proxy = ForwardProxy()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with lf.init(backend="lambda", **small_aws.config):
            n = len(proxy.invocations())
            proxy.inject("/invocations", 503, "ServiceException", 1)
            proxy.inject("/invocations", 502, "ResourceNotReadyException", 1)
            assert lf.get(echo.remote(5)) == 5
            assert len(proxy.invocations()) - n == 3  # two answered by the faults
            proxy.inject("/invocations", 502, "KMSAccessDeniedException", 1)
            with pytest.raises(lf.BackendError, match="KMSAccessDeniedException"):
                lf.get(echo.remote(6))
    finally:
        proxy.close()


def test_tasks_and_the_ping_follow_http_proxy_and_no_proxy(small_aws, fresh, monkeypatch):
    """Issue 13.2: the ping went through boto3 (proxy honoured), tasks did not."""
    from tests.runtime.backends.netfixtures import ForwardProxy

    proxy = ForwardProxy()
    try:
        for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with lf.init(backend="lambda", **small_aws.config):
            assert len(proxy.invocations()) == 1  # the version ping
            assert lf.get(echo.remote(1)) == 1
            assert len(proxy.invocations()) == 2
        assert any("/configuration" in u for _, u in proxy.seen)  # control plane too
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        seen = len(proxy.seen)
        with lf.init(backend="lambda", **small_aws.config):
            assert lf.get(echo.remote(2)) == 2
        assert len(proxy.seen) == seen
    finally:
        proxy.close()


def test_https_endpoint_through_a_tunnel_with_aws_ca_bundle(small_aws, fresh, monkeypatch,
                                                            tmp_path):
    from tests.runtime.backends.netfixtures import ForwardProxy, TlsRelay, make_ca

    ca, cert, key = make_ca(tmp_path)
    port = int(small_aws.emulator.endpoint_url.rsplit(":", 1)[1])
    relay, proxy = TlsRelay(port, cert, key), ForwardProxy()
    try:
        for var in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "REQUESTS_CA_BUNDLE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
        cfg = dict(small_aws.config, lambda_endpoint_url=relay.url)
        with lf.init(backend="lambda", **cfg):
            assert lf.get(echo.remote(3)) == 3
        tunnels = [u for m, u in proxy.seen if m == "CONNECT"]
        assert tunnels and set(tunnels) == {relay.url.removeprefix("https://")}
        monkeypatch.delenv("AWS_CA_BUNDLE")  # the system store does not know the test CA
        with pytest.raises(lf.LambdaflowError, match="(?i)certificate"):
            lf.init(backend="lambda", **cfg)
    finally:
        lf.shutdown()
        relay.close()
        proxy.close()


def test_a_worker_of_another_python_is_refused_with_the_variant_to_deploy(small_aws, fresh):
    """Issue 13.6: the ping compares Python minor, cloudpickle and lambdaflow."""
    import platform

    name = make_function(small_aws, "oldworker",
                         handler="tests.runtime.backends.handlers.old_worker")
    with pytest.raises(lf.ConfigError) as info:
        lf.init(backend="lambda", **dict(small_aws.config, function_name=name))
    text = str(info.value)
    minor = ".".join(platform.python_version_tuple()[:2])
    assert f"Python 3.9.18 (the driver runs {platform.python_version()})" in text
    assert "cloudpickle 2.2.1" in text and "lambdaflow 0.0.1" in text
    assert "image variant py3.9" in text and f"variant 'py{minor}'" in text
    name = make_function(small_aws, "preworker",
                         handler="tests.runtime.backends.handlers.pre_variant_worker")
    with pytest.raises(lf.ConfigError, match="cloudpickle unknown"):
        lf.init(backend="lambda", **dict(small_aws.config, function_name=name))


@lf.remote
def raise_big(n):
    raise ValueError("x" * n)


def test_a_7mb_error_message_is_a_value_error_and_runs_once(small, small_aws):
    """Issue 13.4: it was a "response too large" WorkerCrashedError, run 4 times."""
    name = small_aws.config["function_name"]
    before = settle(small_aws, name)["invocations"]
    with pytest.raises(ValueError) as info:
        lf.get(raise_big.remote(7 * 1024 * 1024))
    assert isinstance(info.value, lf.TaskError)
    assert not isinstance(info.value, lf.WorkerCrashedError)
    assert "characters cut by lambdaflow" in str(info.value)
    assert settle(small_aws, name)["invocations"] - before == 1


@lf.remote
def stuck_in_c(seconds):
    """Stands in for a C call that does not return to the interpreter: SIGALRM is
    blocked, and the sleep releases the GIL."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "slept"


def test_timeout_s_is_enforced_in_the_worker(small_aws, fresh):
    """Issue 12.10: a timeout_s=1 task that sleeps 30 s returned its value."""
    name = make_function(small_aws, "patient", timeout=60)
    with lf.init(backend="lambda", **dict(small_aws.config, function_name=name)):
        with pytest.raises(lf.TaskTimeoutError, match="timeout_s=1") as info:
            lf.get(nap.options(timeout_s=1).remote(1, 30))
        assert "did not return to Python" not in str(info.value)  # the soft stop did it
        assert lf.get(nap.options(timeout_s=10).remote(2, 0.1)) == 2
        with pytest.raises(lf.TaskTimeoutError, match="did not return to Python"):
            lf.get(stuck_in_c.options(timeout_s=1).remote(30))
        assert lf.get(echo.remote(3)) == 3  # a fresh environment took over


# ------------------------------------------------------------ payload spill paths


@lf.remote
def total(*parts):
    return sum(int(p.sum()) for p in parts)


def test_inline_dependencies_over_the_request_limit_run_end_to_end(small_aws, fresh):
    name = make_function(small_aws, "patient", timeout=60)
    with lf.init(backend="lambda", **dict(small_aws.config, function_name=name)):
        parts = [lf.put(np.full(7_000, i, dtype=np.int64)) for i in range(120)]  # 56 kB each
        assert lf.get(total.remote(*parts)) == sum(7_000 * i for i in range(120))


def test_describe_says_where_and_how_without_secrets(small_aws, fresh, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    cfg = dict(small_aws.config)  # the stand-ins verify SigV4: their own per-run key
    key, secret = cfg["aws_access_key_id"], cfg["aws_secret_access_key"]
    with lf.init(backend="lambda", **cfg) as rt:
        info = rt.backend.describe()
    assert info["function"] == small_aws.config["function_name"]
    assert info["lambda_endpoint"] == small_aws.emulator.endpoint_url
    assert info["s3_endpoint"] == small_aws.moto.endpoint_url
    assert info["function_timeout_s"] == 30 and info["reserved_concurrency"] == 2
    assert info["account_concurrency"] == 1000 and info["keepalive_idle_s"] < 60
    assert secret not in repr(info) and key not in repr(info)


def test_credentials_in_the_config_are_enough_and_stay_out_of_messages(small_aws, fresh,
                                                                        monkeypatch, tmp_path):
    """Credentials can travel with the config (issue 10.3): with none in the
    environment or ~/.aws, the config's own reach the backend and its store; no task
    payload carries them."""
    for k in list(os.environ):
        if k.startswith("AWS_") and k != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cfg = dict(small_aws.config)  # carries the stand-ins' per-run key (they verify SigV4)
    key, secret = cfg["aws_access_key_id"], cfg["aws_secret_access_key"]
    with lf.init(backend="lambda", **cfg) as rt:
        assert lf.get(echo.remote(np.arange(3))).tolist() == [0, 1, 2]
        from lambdaflow.runtime.task import TaskMessage

        msg = TaskMessage(job_id=rt.job_id, task_id="c", name="t", fn_key="fn/x", args=b"a",
                          store_uri=rt.backend.store.uri)
        payload = rt.backend.payload(msg)
        assert secret.encode() not in payload and key.encode() not in payload
        assert secret not in repr(rt.config)
