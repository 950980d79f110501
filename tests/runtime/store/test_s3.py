"""S3Store against moto's server on 127.0.0.1, plus a fault-injecting HTTP proxy in front
of it (answers 503 SlowDown / 500 InternalError or drops the connection N times, then
forwards) to prove the retry path."""

from __future__ import annotations

import http.client
import http.server
import threading
import uuid
from urllib.parse import urlparse

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from lambdaflow import aws
from lambdaflow.errors import BackendError, ConfigError, ObjectLostError
from lambdaflow.runtime.store.s3 import MiB, S3Store
from lambdaflow.testing.moto_server import MotoServer

BUCKET = "lf-test-store"


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    boto3.client("s3", **server.client_kwargs).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def store(moto):
    return S3Store(
        BUCKET,
        prefix=f"t-{uuid.uuid4().hex[:8]}/",
        client=_client(moto.endpoint_url, moto),
    )


def _settings(endpoint_url: str, moto: MotoServer) -> aws.AwsSettings:
    creds = moto.client_kwargs
    return aws.AwsSettings(
        region=moto.region,
        endpoints=(("s3", endpoint_url),),
        access_key_id=creds["aws_access_key_id"],
        secret_access_key=creds["aws_secret_access_key"],
        session_token=creds["aws_session_token"],
    )


def _client(endpoint_url: str, moto: MotoServer):
    """A client configured as S3Store configures its own, with moto's credentials."""
    return aws.client("s3", _settings(endpoint_url, moto), attempts=1)


# -- a fault-injecting proxy -------------------------------------------------------------


class FaultProxy:
    """HTTP proxy on 127.0.0.1 forwarding to ``target``; the first ``failures`` requests
    whose method is in ``methods`` get ``fault`` instead ("503", "500" or "drop")."""

    def __init__(
        self, target: str, failures: int, fault: str = "503", methods=None
    ) -> None:
        self.failures = failures
        self.fault = fault
        self.methods = methods
        self.faults_sent = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        host, port = urlparse(target).hostname, urlparse(target).port
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    inject = proxy.faults_sent < proxy.failures and (
                        proxy.methods is None or self.command in proxy.methods
                    )
                    if inject:
                        proxy.faults_sent += 1
                    else:
                        proxy.forwarded += 1
                if inject:
                    if proxy.fault == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    code, name = (
                        (503, "SlowDown")
                        if proxy.fault == "503"
                        else (500, "InternalError")
                    )
                    xml = (
                        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{name}</Code>"
                        f"<Message>injected</Message></Error>"
                    ).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                conn = http.client.HTTPConnection(host, port, timeout=30)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "connection"
                }
                conn.request(
                    self.command, self.path, body=body or None, headers=headers
                )
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy_store(moto):
    proxies = []

    def make(failures: int, fault: str = "503", methods=None, max_attempts: int = 4):
        proxy = FaultProxy(moto.endpoint_url, failures, fault, methods)
        proxies.append(proxy)
        store = S3Store(
            BUCKET,
            prefix=f"p-{uuid.uuid4().hex[:8]}/",
            client=_client(proxy.endpoint_url, moto),
            max_attempts=max_attempts,
            backoff_base=0.001,
            backoff_cap=0.01,
        )
        return store, proxy

    yield make
    for proxy in proxies:
        proxy.close()


# -- the protocol ------------------------------------------------------------------------


def test_uri_and_from_uri(moto, monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", moto.endpoint_url)
    store = S3Store.from_uri(f"s3://{BUCKET}/lambdaflow/")
    assert store.uri == f"s3://{BUCKET}/lambdaflow/"
    assert store.bucket == BUCKET and store.prefix == "lambdaflow/"
    assert store.endpoint_url == moto.endpoint_url
    assert S3Store(BUCKET, prefix="x", client=object()).uri == f"s3://{BUCKET}/x/"
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        S3Store.from_uri("file:///tmp/x")


def test_put_get_exists_delete(store):
    key = "job1/obj/a"
    assert not store.exists(key)
    assert store.put(key, b"hello world") == 11
    assert store.exists(key)
    value = store.get(key)
    assert isinstance(value, bytearray) and value == b"hello world"
    store.put(key, [b"over", bytearray(b"-"), memoryview(b"written")])
    assert store.get(key) == b"over-written"
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # missing: not an error


def test_keys_live_under_prefix(store, moto):
    store.put("job1/obj/x", b"1")
    raw = boto3.client("s3", **moto.client_kwargs)
    listed = [
        o["Key"]
        for o in raw.list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)["Contents"]
    ]
    assert listed == [store.prefix + "job1/obj/x"]


def test_empty_value(store):
    store.put("j/obj/empty", b"")
    assert store.get("j/obj/empty") == bytearray()
    assert store.get("j/obj/empty", 0, 10) == bytearray()


def test_ranged_get(store):
    data = bytes(range(256)) * 40
    store.put("j/obj/r", data)
    assert store.get("j/obj/r", 10, 20) == data[10:20]
    assert store.get("j/obj/r", 100) == data[100:]
    assert store.get("j/obj/r", None, 5) == data[:5]
    assert store.get("j/obj/r", 5, 5) == b""
    assert store.get("j/obj/r", len(data) - 3, len(data) + 100) == data[-3:]
    assert store.get("j/obj/r", len(data) + 10, len(data) + 20) == b""
    before = store.bytes_read
    store.get("j/obj/r", 0, 7)
    assert store.bytes_read - before == 7


def test_multipart_from_list_of_buffers(store, moto):
    import numpy as np

    rng = np.random.default_rng(0)
    parts = [
        rng.integers(0, 255, size=n, dtype=np.uint8)
        for n in (3 * MiB + 7, 5 * MiB, 2 * MiB + 11)
    ]
    parts.insert(1, b"header-bytes")
    expected = b"".join(bytes(memoryview(p)) for p in parts)
    assert len(expected) > 10 * MiB
    written_before = store.bytes_written
    assert store.put("j/obj/big", parts) == len(expected)
    assert store.bytes_written - written_before == len(expected)
    got = store.get("j/obj/big")
    assert len(got) == len(expected) and got == expected
    assert (
        store.get("j/obj/big", 8 * MiB - 5, 8 * MiB + 5)
        == expected[8 * MiB - 5 : 8 * MiB + 5]
    )
    raw = boto3.client("s3", **moto.client_kwargs)
    head = raw.head_object(Bucket=BUCKET, Key=store.prefix + "j/obj/big")
    assert "-" in head["ETag"]  # a multipart ETag: "<md5>-<parts>"
    assert raw.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_delete_prefix_in_batches(store):
    store.delete_batch_size = (
        7  # S3 allows 1000; 7 exercises paging and batching quickly
    )
    for i in range(23):
        store.put(f"jobA/obj/{i}", b"x")
    store.put("jobB/obj/keep", b"y")
    requests_before = store.counters()["requests"]
    assert store.delete_prefix("jobA/") == 23
    assert (
        store.counters()["requests"] - requests_before == 4 + 4
    )  # 4 list pages, 4 deletes
    assert not store.exists("jobA/obj/0")
    assert store.exists("jobB/obj/keep")
    assert store.delete_prefix("jobA/") == 0


def test_delete_prefix_refuses_whole_bucket(moto):
    store = S3Store(BUCKET, prefix="", client=_client(moto.endpoint_url, moto))
    with pytest.raises(ValueError, match="whole bucket"):
        store.delete_prefix("")


def test_store_is_thread_safe(store):
    from concurrent.futures import ThreadPoolExecutor

    def roundtrip(i: int) -> bool:
        data = str(i).encode() * 100
        store.put(f"j/obj/t{i}", data)
        return store.get(f"j/obj/t{i}") == data

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(roundtrip, range(64)))
    counters = store.counters()
    assert counters["bytes_written"] == counters["bytes_read"] > 0


# -- errors ------------------------------------------------------------------------------


def test_missing_key_is_object_lost(store):
    with pytest.raises(ObjectLostError) as info:
        store.get("job9/obj/nope")
    assert info.value.key == "job9/obj/nope"
    assert f"s3://{BUCKET}/{store.prefix}job9/obj/nope" in str(info.value)
    with pytest.raises(ObjectLostError):
        store.get("job9/obj/nope", 0, 10)


def test_missing_bucket_is_config_error(moto):
    store = S3Store("lf-no-such-bucket", client=_client(moto.endpoint_url, moto))
    for call in (
        lambda: store.get("j/obj/a"),
        lambda: store.put("j/obj/a", b"1"),
        lambda: store.exists("j/obj/a"),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "lf-no-such-bucket" in message
        assert (
            "lambdaflow deploy" in message
            and "aws s3 mb s3://lf-no-such-bucket" in message
        )


def test_no_credentials_is_config_error(moto, monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3Store(BUCKET, settings=aws.AwsSettings(endpoints=(("s3", moto.endpoint_url),)))
    with pytest.raises(ConfigError) as info:
        store.get("j/obj/a")
    assert "no AWS credentials" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="5 MiB"):
        S3Store(BUCKET, client=object(), part_size=1024)
    with pytest.raises(ConfigError, match="bucket name"):
        S3Store("a/b", client=object())


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "500", "drop"])
def test_transient_faults_are_retried(proxy_store, fault):
    store, proxy = proxy_store(failures=2, fault=fault, max_attempts=4)
    store.put("j/obj/a", b"payload")
    assert store.get("j/obj/a") == b"payload"
    assert proxy.faults_sent == 2
    assert store.counters()["retries"] == 2


def test_multipart_part_retried(proxy_store):
    store, proxy = proxy_store(failures=2, fault="503", methods={"PUT"}, max_attempts=4)
    data = [b"a" * (6 * MiB), b"b" * (5 * MiB)]
    store.multipart_threshold = 8 * MiB
    store.put("j/obj/big", data)
    assert proxy.faults_sent == 2
    assert store.get("j/obj/big") == b"".join(data)


def test_retry_budget_exhausted_is_backend_error(proxy_store):
    store, proxy = proxy_store(failures=100, fault="503", max_attempts=3)
    with pytest.raises(BackendError) as info:
        store.get("j/obj/a")
    assert proxy.faults_sent == 3
    message = str(info.value)
    assert (
        "after 3 attempts" in message and "SlowDown" in message and "j/obj/a" in message
    )


def test_failed_multipart_is_aborted(proxy_store, moto):
    # CreateMultipartUpload (POST) goes through, then every PUT (UploadPart) fails.
    store, _ = proxy_store(failures=100, fault="500", methods={"PUT"}, max_attempts=2)
    with pytest.raises(BackendError):
        store.put("j/obj/big", [b"z" * (9 * MiB)])
    raw = boto3.client("s3", **moto.client_kwargs)
    uploads = raw.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get(
        "Uploads", []
    )
    assert uploads == []


def test_non_retryable_client_error_is_not_retried(store, moto):
    from botocore.exceptions import ClientError

    calls = []

    def boom():
        calls.append(1)
        raise ClientError(
            {"Error": {"Code": "InvalidArgument", "Message": "bad"}}, "PutObject"
        )

    with pytest.raises(BackendError, match="InvalidArgument"):
        store._call("PutObject", "j/obj/a", boom)
    assert len(calls) == 1


def test_buffers_reader_reads_any_range_of_any_split():
    import io
    import random

    from lambdaflow.runtime.store.s3_io import BuffersReader

    rng = random.Random(0)
    bufs = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (0, 5, 17, 1, 30)]
    views, full = [memoryview(b) for b in bufs], b"".join(bufs)
    for _ in range(500):
        a = rng.randint(0, len(full))
        b = rng.randint(a, len(full))
        reader = BuffersReader(views, a, b)
        assert len(reader) == b - a
        chunks = []
        while chunk := reader.read(rng.choice([1, 3, 7, 100, -1])):
            chunks.append(chunk)
        assert b"".join(chunks) == full[a:b]
        reader.seek(0)
        into = bytearray(b - a + 5)
        assert into[: reader.readinto(into)] == full[a:b]
        reader.seek(-1, io.SEEK_END)
        assert reader.read() == full[a:b][-1:]


# -- fenced writes: PutObject / CompleteMultipartUpload with If-None-Match: * --------------


@pytest.mark.parametrize("size", [11, 9 * MiB], ids=["put", "multipart"])
def test_create_is_a_conditional_write(moto, size):
    """``create`` sends If-None-Match: * (AWS conditional writes; moto 5's server
    answers 412 PreconditionFailed): the second writer leaves the first one's object,
    on the single PUT and on the multipart path (aborting its upload); a deleted key
    can be written again (lineage reconstruction)."""
    store = S3Store(BUCKET, prefix=f"c-{uuid.uuid4().hex[:8]}/",
                    client=_client(moto.endpoint_url, moto))
    first, second = b"a" * size, b"b" * size
    assert store.create("job/obj/t1", first) == size
    assert store.create("job/obj/t1", second) is None
    assert store.get("job/obj/t1") == first
    raw = boto3.client("s3", **moto.client_kwargs)
    uploads = raw.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix)
    assert uploads.get("Uploads", []) == []  # the loser's upload was aborted
    store.delete("job/obj/t1")
    assert store.create("job/obj/t1", second) == size
    assert store.get("job/obj/t1") == second
    assert store.counters()["bytes_written"] == 2 * size  # the loser wrote nothing


def test_the_raw_boto3_call_is_refused_by_moto(moto):
    """The independent check of the header itself: boto3's put_object with
    IfNoneMatch='*' on an existing key fails with 412 PreconditionFailed."""
    raw = boto3.client("s3", **moto.client_kwargs)
    key = f"raw-{uuid.uuid4().hex[:8]}"
    raw.put_object(Bucket=BUCKET, Key=key, Body=b"1", IfNoneMatch="*")
    with pytest.raises(raw.exceptions.ClientError) as info:
        raw.put_object(Bucket=BUCKET, Key=key, Body=b"2", IfNoneMatch="*")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    assert raw.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"1"


def test_concurrent_creates_have_exactly_one_winner_on_s3(store):
    barrier = threading.Barrier(6)
    won: list[int] = []

    def attempt(i: int) -> None:
        barrier.wait()
        if store.create("job/obj/race", bytes([i]) * 70_000) is not None:
            won.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert store.get("job/obj/race") == bytes([won[0]]) * 70_000


def test_prefix_limited_listing_tells_lost_from_present_in_one_request_each():
    """AWS answers 403 (not 404) for a missing key to a caller whose s3:ListBucket is
    limited to a prefix, as the worker role's is (moto here evaluates that condition as
    AWS does: lambdaflow.testing.moto_iam). The store tells a lost object from a present
    one by a one-key listing, and after the first 403 asks the listing directly."""
    import json

    with MotoServer(iam=True) as server:
        admin = server.client("s3")
        admin.create_bucket(Bucket=BUCKET)
        admin.put_object(Bucket=BUCKET, Key="jobs/present", Body=b"x")
        iam = server.client("iam")
        iam.create_user(UserName="worker")
        iam.put_user_policy(UserName="worker", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:ListBucket",
                 "Resource": f"arn:aws:s3:::{BUCKET}",
                 "Condition": {"StringLike": {"s3:prefix": ["jobs/*"]}}},
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": f"arn:aws:s3:::{BUCKET}/jobs/*"}]}))  # fmt: skip
        key = iam.create_access_key(UserName="worker")["AccessKey"]
        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"])  # fmt: skip
        raw = None
        try:
            client.head_object(Bucket=BUCKET, Key="jobs/missing")
        except Exception as exc:  # noqa: BLE001 - the status is what is checked
            raw = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        assert raw == 403  # as AWS: the condition does not match a HEAD
        store = S3Store(BUCKET, prefix="jobs/", client=client)
        assert store.exists("missing") is False
        assert store.exists("present") is True
        with pytest.raises(ObjectLostError):
            store.get("missing")
        assert bytes(store.get("present")) == b"x"
        before = store.counters()["requests"]
        assert store.exists("missing") is False and store.exists("present") is True
        assert store.counters()["requests"] - before == 2  # one listing each
