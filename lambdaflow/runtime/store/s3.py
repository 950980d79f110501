"""The S3 object store: lambdaflow's ``Store`` protocol over one S3 bucket and prefix.

State and flow::

    S3Store(bucket, prefix)          one boto3 client, shared by every thread (boto3 clients
      │                              are thread-safe); its urllib3 pool keeps up to
      │                              ``max_pool_connections`` connections alive
      ├─ put(key, data) ───────────► PutObject              (size <= multipart_threshold)
      │                              CreateMultipartUpload → UploadPart × n → Complete
      │                              (AbortMultipartUpload on any failure)
      ├─ create(key, data) ────────► the same with If-None-Match: * (412: None)
      ├─ get(key, start, end) ─────► GetObject [Range]      body read into one bytearray
      ├─ exists(key) ──────────────► HeadObject             (HeadBucket once on a 404)
      ├─ delete(key) ──────────────► DeleteObject
      └─ delete_prefix(p) ─────────► ListObjectsV2 pages → DeleteObjects in 1000s

The client comes from :mod:`lambdaflow.aws` (endpoint, region, credentials; botocore
retries off, a pool of ``max_pool_connections``), unless one is passed in.

Every store key is joined under ``prefix`` (``"lambdaflow/" + "<job>/obj/<id>"``); the
store never invents key names (``lambdaflow.runtime.keys`` does). ``put`` of a list of
buffers never joins them (except below 64 KiB): request bodies are read straight from the
caller's buffers through :class:`BuffersReader`, part by part for multipart uploads.
``get`` reads the body into one preallocated ``bytearray`` of ``ContentLength`` bytes.

Retries: botocore's own retries are off (``total_max_attempts=1``) so the whole budget is
ours and visible here. Each S3 call is attempted up to ``max_attempts`` times (default 5);
before attempt n+1 it sleeps ``uniform(0, min(backoff_cap, backoff_base * 2**n))`` ("full
jitter"; defaults 0.05 s and 5 s). Retried: HTTP 5xx, ``SlowDown`` and the other
throttling codes in ``aws_codes.RETRYABLE``, connection / timeout errors and bodies cut
short or failing their checksum (a body read is part of its attempt). After the budget, a
``BackendError`` names the operation, the object and the last error.

Errors are translated here, at the boundary: a missing key → ``ObjectLostError`` naming
``s3://bucket/prefix/key``; a missing bucket → ``ConfigError`` naming the bucket and the
command that creates it; missing or rejected credentials → ``ConfigError`` in one line.

Counters (``bytes_read``, ``bytes_written``, ``requests``, ``retries``) are kept under a
lock; read them with :meth:`S3Store.counters`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from lambdaflow import aws
from lambdaflow.aws import AwsSettings
from lambdaflow.aws_codes import MISSING_KEY, PRECONDITION_FAILED, code, status
from lambdaflow.errors import BackendError, ConfigError, ObjectLostError
from lambdaflow.runtime.store import s3_errors
from lambdaflow.runtime.store.base import Data, buffers
from lambdaflow.runtime.store.s3_io import BuffersReader, read_body

try:
    from botocore import exceptions as bx
except ImportError:  # pragma: no cover - depends on the install; aws.client explains
    bx = None

log = logging.getLogger(__name__)
T = TypeVar("T")

MiB = 1024 * 1024
#: S3 limits: parts of 5 MiB .. 5 GiB (the last may be smaller), at most 10,000 parts,
#: objects of at most 5 TiB.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB
_SMALL_PUT = 64 * 1024


class S3Store:
    """Bytes behind keys in ``s3://bucket/prefix``. Thread-safe; share one per process."""

    #: Keys per ListObjectsV2 page and per DeleteObjects call (S3's maximum for both).
    delete_batch_size: int = 1000

    def __init__(
        self,
        bucket: str,
        prefix: str = "lambdaflow/",
        *,
        client: Any = None,
        settings: AwsSettings | None = None,
        max_attempts: int = 5,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
        multipart_threshold: int = 8 * MiB,
        part_size: int = 8 * MiB,
        max_pool_connections: int = 64,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(
                f"S3 bucket name {bucket!r} is not valid: give a bare bucket name such "
                "as 'my-bucket' (the key prefix goes in prefix=...)"
            )
        if max_attempts < 1:
            raise ConfigError(f"S3 max_attempts={max_attempts} must be at least 1")
        if part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"S3 part_size={part_size} is below S3's 5 MiB minimum part size; "
                f"use part_size >= {MIN_PART_SIZE}"
            )
        prefix = prefix.lstrip("/")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.uri = f"s3://{bucket}/{self.prefix}"
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.multipart_threshold = max(1, multipart_threshold)
        self.part_size = part_size
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(
            ("bytes_read", "bytes_written", "requests", "retries"), 0
        )
        self._bucket_checked = False
        #: HEAD of a missing key was answered 403 (listing limited to a prefix): from then
        #: on ``exists`` asks the one-key listing at once (one request, not two)
        self._head_denied = False
        self.client = client or aws.client(
            "s3", settings, attempts=1, pool=max_pool_connections, read_timeout=60.0
        )
        #: where the client sends requests (its meta), for error messages
        self.endpoint_url: str | None = getattr(
            getattr(self.client, "meta", None), "endpoint_url", None
        )

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> S3Store:
        """The store for ``s3://bucket/prefix``. Without ``client`` or ``settings`` the
        client follows :mod:`lambdaflow.aws`'s rules from the environment
        (``LAMBDAFLOW_S3_ENDPOINT_URL``, then botocore's ``AWS_ENDPOINT_URL_S3``, ...)."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(
                f"store URI {uri!r} is not an S3 URI: expected s3://bucket/prefix/"
            )
        return cls(parsed.netloc, parsed.path.lstrip("/"), **kwargs)

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    # -- the Store protocol ---------------------------------------------------------------

    def put(self, key: str, data: Data) -> int:
        size = self._write(key, buffers(data), exclusive=False)
        assert size is not None
        return size

    def create(self, key: str, data: Data) -> int | None:
        """A conditional write: ``If-None-Match: *`` on PutObject (or on
        CompleteMultipartUpload), which S3 refuses with 412 PreconditionFailed when the
        key exists (AWS "conditional writes", 2024-08; moto 5 implements both). A 409
        ConditionalRequestConflict (a concurrent conditional write) is retried, and the
        retry then sees the winner's object."""
        return self._write(key, buffers(data), exclusive=True)

    def _write(self, key: str, views: list[memoryview], *, exclusive: bool) -> int | None:
        size = sum(v.nbytes for v in views)
        if size > MAX_OBJECT_SIZE:
            raise BackendError(
                f"value for {self._url(key)} is {size} bytes, over S3's 5 TiB object "
                "limit even with multipart upload; split it into smaller objects"
            )
        condition = {"IfNoneMatch": "*"} if exclusive else {}
        if size > self.multipart_threshold:
            written = self._put_multipart(key, views, size, condition)
        else:
            def put_once() -> bool:
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self._full(key),
                        Body=b"".join(views) if size <= _SMALL_PUT
                        else BuffersReader(views, 0, size),
                        ContentLength=size, **condition)  # fmt: skip
                except bx.ClientError as exc:
                    if exclusive and code(exc) in PRECONDITION_FAILED:
                        return False
                    raise
                return True

            written = self._call("PutObject", key, put_once)
        if not written:
            return None
        self._count(bytes_written=size)
        return size

    def get(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> bytearray:
        if (start or 0) < 0 or (end is not None and end < 0):
            raise ValueError(
                f"get({key!r}, start={start}, end={end}): offsets must be >= 0 "
                "(negative offsets are not supported by the store protocol)"
            )
        first = start or 0
        if end is not None and end <= first:
            if not self.exists(key):
                raise self._lost(key)
            return bytearray()
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key)}
        if start is not None or end is not None:
            params["Range"] = f"bytes={first}-" + ("" if end is None else str(end - 1))

        denied: list[Exception] = []

        def get_once() -> bytearray | None:
            try:
                resp = self.client.get_object(**params)
            except bx.ClientError as exc:
                if code(exc) in ("InvalidRange", "416"):  # start past the end: empty
                    return bytearray()
                if status(exc) == 403 or code(exc) == "AccessDenied":
                    denied.append(exc)
                    return None  # missing, or really forbidden: ask the listing
                raise
            return read_body(resp["Body"], int(resp["ContentLength"]))

        got = self._call("GetObject", key, get_once)
        if got is None:
            # S3 answers 403 for a missing key to a caller that may not list it (the
            # worker role may list only its job prefix, and a GET carries no s3:prefix):
            # a one-key listing tells a lost object from a forbidden one.
            if not self._call("ListObjectsV2", key, lambda: self._listed(key)):
                raise self._lost(key)
            self._raise_if_permanent("GetObject", key, denied[0])  # the ConfigError
            raise denied[0]
        out = got
        self._count(bytes_read=len(out))
        return out

    def exists(self, key: str) -> bool:
        """HeadObject; when S3 answers 403 (it does for a missing key unless the caller
        may list the whole bucket, and the worker role may list only its prefix), or
        on the first miss (HEAD says 404 for a missing bucket too), a ListObjectsV2
        of exactly this key decides: the prefix-limited ListBucket allows that one. After
        one such 403 the listing is asked directly."""
        full = self._full(key)

        def head_once() -> bool | None:
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
                return True
            except bx.ClientError as exc:
                if code(exc) in MISSING_KEY:
                    return False
                if status(exc) == 403 or code(exc) in ("AccessDenied", "403"):
                    return None  # missing, or really forbidden: ask the listing
                raise

        if self._head_denied:
            return self._call("ListObjectsV2", key, lambda: self._listed(key))
        found = self._call("HeadObject", key, head_once)
        if found is None:
            self._head_denied = True
        if found is None or (not found and not self._bucket_checked):
            # NoSuchBucket raises
            found = self._call("ListObjectsV2", key, lambda: self._listed(key))
            self._bucket_checked = True
        return found

    def _listed(self, key: str) -> bool:
        """Whether ``key`` exists, by a ListObjectsV2 of exactly its name (allowed by a
        ListBucket that is limited to the job prefix)."""
        full = self._full(key)
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        return any(obj["Key"] == full for obj in page.get("Contents", []))

    def delete(self, key: str) -> None:
        self._call(
            "DeleteObject",
            key,
            lambda: self.client.delete_object(Bucket=self.bucket, Key=self._full(key)),
        )

    def delete_prefix(self, prefix: str) -> int:
        full = self._full(prefix)
        if not full:
            raise ValueError(
                f"delete_prefix('') on {self.uri} would delete the whole bucket; give a "
                "job prefix (keys.job_prefix(job)) or configure a store prefix"
            )
        size = self.delete_batch_size
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": full,
            "MaxKeys": size,
        }
        deleted = 0
        while True:
            page = self._call(
                "ListObjectsV2", prefix, lambda: self.client.list_objects_v2(**params)
            )
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            for i in range(0, len(keys), size):
                batch = keys[i : i + size]

                def delete_batch(b: list[dict[str, str]] = batch) -> Any:
                    return self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}
                    )

                resp = self._call("DeleteObjects", prefix, delete_batch)
                if resp.get("Errors"):
                    err = resp["Errors"][0]
                    raise BackendError(
                        f"S3 DeleteObjects under s3://{self.bucket}/{full} failed for "
                        f"{len(resp['Errors'])} of {len(batch)} keys (first: "
                        f"{err.get('Key')}: {err.get('Code')} {err.get('Message')}); check "
                        "that the IAM policy allows s3:DeleteObject, then retry"
                    )
                deleted += len(batch)
            if not page.get("IsTruncated"):
                return deleted
            params["ContinuationToken"] = page["NextContinuationToken"]

    # -- counters ---------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Totals since creation: bytes_read, bytes_written, requests, retries."""
        with self._lock:
            return dict(self._counters)

    @property
    def bytes_read(self) -> int:
        return self.counters()["bytes_read"]

    @property
    def bytes_written(self) -> int:
        return self.counters()["bytes_written"]

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counters[name] += delta

    # -- internals ------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        if key.startswith("/"):
            raise ValueError(f"store key {key!r} must not start with '/'")
        return self.prefix + key

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _lost(self, key: str) -> ObjectLostError:
        return ObjectLostError(
            f"object {self._url(key)} is missing: it was never written, or was deleted "
            "(job objects are removed at shutdown unless keep_objects=True)",
            key=key,
        )

    def _put_multipart(self, key: str, views: list[memoryview], size: int,
                       condition: dict[str, str]) -> bool:
        """Upload in parts; False when a conditional Complete found the key taken (the
        upload is aborted then)."""
        full = self._full(key)
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        upload_id = self._call(
            "CreateMultipartUpload",
            key,
            lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=full),
        )["UploadId"]
        common = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id}
        completed = False
        try:
            parts = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                n = min(part_size, size - offset)

                def upload(number: int = number, offset: int = offset, n: int = n) -> Any:
                    return self.client.upload_part(
                        PartNumber=number,
                        Body=BuffersReader(views, offset, offset + n),
                        ContentLength=n,
                        **common,
                    )

                resp = self._call("UploadPart", key, upload)
                # Keep the part checksums botocore added: Complete must repeat them.
                parts.append(
                    {"PartNumber": number, "ETag": resp["ETag"]}
                    | {k: v for k, v in resp.items() if k.startswith("Checksum") and v}
                )

            def complete() -> bool:
                try:
                    self.client.complete_multipart_upload(
                        MultipartUpload={"Parts": parts}, **common, **condition)
                except bx.ClientError as exc:
                    if condition and code(exc) in PRECONDITION_FAILED:
                        return False
                    raise
                return True

            completed = self._call("CompleteMultipartUpload", key, complete)
            return completed
        finally:
            if not completed:
                try:
                    self.client.abort_multipart_upload(**common)
                except (bx.BotoCoreError, bx.ClientError) as abort_exc:
                    log.warning(
                        "key=%s could not abort multipart upload %s: %s (an S3 lifecycle "
                        "rule for incomplete uploads cleans it up)",
                        key,
                        upload_id,
                        abort_exc,
                    )

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Run one S3 operation within the retry budget, translating errors."""
        for attempt in range(1, self.max_attempts + 1):
            self._count(requests=1)
            try:
                return fn()
            except bx.ClientError as exc:
                reason = code(exc) or str(status(exc))
                self._raise_if_permanent(op, key, exc)
                last: Exception = exc
            except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
                raise ConfigError(
                    f"no AWS credentials found for s3://{self.bucket}: set AWS_PROFILE "
                    "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`"
                ) from exc
            except s3_errors.TRANSIENT as exc:
                reason, last = type(exc).__name__, exc
            if attempt < self.max_attempts:
                cap = min(self.backoff_cap, self.backoff_base * 2**attempt)
                delay = random.uniform(0, cap)
                self._count(retries=1)
                log.info(
                    "key=%s S3 %s attempt %d/%d failed (%s); retrying in %.3fs",
                    key, op, attempt, self.max_attempts, reason, delay,
                )  # fmt: skip
                time.sleep(delay)
        raise BackendError(
            f"S3 {op} {self._url(key)} failed after {self.max_attempts} attempts (last "
            f"error: {reason}: {last}); the endpoint {self.endpoint_url or 'AWS S3'} is "
            "overloaded or unreachable: retry later or raise max_attempts"
        ) from last

    def _raise_if_permanent(self, op: str, key: str, exc: Exception) -> None:
        """Raise the typed error for a ClientError that retrying will not fix."""
        if code(exc) in MISSING_KEY and op in ("GetObject", "HeadObject"):
            raise self._lost(key) from exc
        error = s3_errors.permanent(op, self.bucket, self._url(key), self.endpoint_url, exc)
        if error is not None:
            raise error from exc
