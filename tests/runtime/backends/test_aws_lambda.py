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
    """A function with reserved concurrency 2 and a 3 s timeout."""
    from lambdaflow.testing.aws_local import local_aws

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with local_aws(concurrency=2, timeout_s=3, python_path=[ROOT]) as aws:
            yield aws
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def small(small_aws, fresh):
    with lf.init(backend="lambda", **dict(small_aws.config, max_concurrency=8)) as rt:
        yield rt


def test_throttling_is_absorbed_and_counted(small):
    refs = [nap.remote(i, 0.1) for i in range(40)]
    assert lf.get(refs) == list(range(40))
    summary = lf.stats().summary()
    assert summary["throttles"] > 0, "8 invokers against concurrency 2 must see 429s"
    assert summary["tasks"] == 40 and small.backend.throttles == summary["throttles"]


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


def test_timeout_is_task_timeout_error(small):
    with pytest.raises(lf.TaskTimeoutError, match="timed out"):
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
