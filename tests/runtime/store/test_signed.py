"""SignedStore over every store kind: the blob layout (checked against an HMAC computed
here from the documented format, not by the store's own code), tampering, replay under
another key or job, truncation, ranged reads, and zero-copy writable reads."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid

import numpy as np
import pytest

from lambdaflow import serialization
from lambdaflow.errors import IntegrityError, ObjectLostError
from lambdaflow.runtime.integrity import new_job_key
from lambdaflow.runtime.store.localdir import MMAP_MIN, LocalDirStore
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.store.signed import TAG_SIZE, SignedStore
from lambdaflow.runtime.task import TaskMessage


def expected_tag(job_key: bytes, key: str, data: bytes) -> bytes:
    """The tag as docs/SECURITY.md and signed.py's docstring define it."""
    name = key.encode()
    msg = b"lambdaflow blob v1\0" + struct.pack("<I", len(name)) + name + data
    return hmac.new(job_key, msg, hashlib.sha256).digest()


@pytest.fixture(scope="module")
def moto():
    pytest.importorskip("moto")
    import boto3

    from lambdaflow.testing.moto_server import MotoServer

    with MotoServer() as server:
        boto3.client("s3", **server.client_kwargs).create_bucket(Bucket="signed")
        yield server


@pytest.fixture
def s3_inner(moto):
    import boto3

    from lambdaflow.runtime.store.s3 import S3Store

    return S3Store("signed", f"t-{uuid.uuid4().hex[:8]}/",
                   client=boto3.client("s3", **moto.client_kwargs))


@pytest.fixture(params=["memory", "localdir", "s3"])
def inner(request, tmp_path):
    if request.param == "memory":
        return MemoryStore()
    if request.param == "localdir":
        return LocalDirStore(str(tmp_path / "store"))
    return request.getfixturevalue("s3_inner")


@pytest.fixture
def job_key():
    return new_job_key()


def test_layout_is_data_then_hmac_of_domain_key_and_data(inner, job_key):
    store = SignedStore(inner, job_key)
    assert store.put("j/obj/a", [b"he", b"llo"]) == 5
    raw = bytes(inner.get("j/obj/a"))
    assert raw[:-TAG_SIZE] == b"hello"
    assert raw[-TAG_SIZE:] == expected_tag(job_key, "j/obj/a", b"hello")
    assert bytes(store.get("j/obj/a")) == b"hello"


@pytest.mark.parametrize("size", [0, 100, MMAP_MIN + 8])
def test_round_trip_gives_writable_arrays(inner, job_key, size):
    store = SignedStore(inner, job_key)
    arr = np.arange(size // 8, dtype=np.int64)
    store.put("j/obj/arr", serialization.dumps(arr))
    back = serialization.loads(store.get("j/obj/arr"))
    assert np.array_equal(back, arr)
    if back.size:
        back[0] = -1  # writable, as from an unsigned store


def test_a_flipped_byte_is_refused_naming_the_key(inner, job_key):
    store = SignedStore(inner, job_key)
    store.put("j/obj/a", b"x" * 1000)
    raw = bytearray(inner.get("j/obj/a"))
    raw[500] ^= 1
    inner.put("j/obj/a", raw)
    with pytest.raises(IntegrityError, match="j/obj/a") as info:
        store.get("j/obj/a")
    assert info.value.key == "j/obj/a"


def test_an_unsigned_blob_is_refused(inner, job_key):
    inner.put("j/obj/a", b"a value that somebody else wrote without the job's key")
    with pytest.raises(IntegrityError):
        SignedStore(inner, job_key).get("j/obj/a")
    inner.put("j/obj/b", b"short")  # shorter than a tag
    with pytest.raises(IntegrityError, match="shorter"):
        SignedStore(inner, job_key).get("j/obj/b")


def test_replay_under_another_key_or_job_is_refused(inner, job_key):
    store = SignedStore(inner, job_key)
    store.put("j/obj/a", b"value of a")
    inner.put("j/obj/b", inner.get("j/obj/a"))  # a's blob, copied to b
    with pytest.raises(IntegrityError, match="j/obj/b"):
        store.get("j/obj/b")
    other_job = SignedStore(inner, new_job_key())
    other_job.put("j/obj/c", b"another job's value")
    with pytest.raises(IntegrityError):
        store.get("j/obj/c")


def test_ranged_reads_check_the_whole_blob(inner, job_key):
    store = SignedStore(inner, job_key)
    store.put("j/obj/a", bytes(range(200)))
    assert bytes(store.get("j/obj/a", 10, 20)) == bytes(range(10, 20))
    raw = bytearray(inner.get("j/obj/a"))
    raw[150] ^= 0xFF  # outside the range asked for
    inner.put("j/obj/a", raw)
    with pytest.raises(IntegrityError):
        store.get("j/obj/a", 10, 20)


def test_missing_keys_and_pass_through_operations(inner, job_key):
    store = SignedStore(inner, job_key)
    with pytest.raises(ObjectLostError):
        store.get("j/obj/none")
    store.put("j/obj/a", b"1")
    store.put("j/fn/b", b"2")
    assert store.exists("j/obj/a") and store.uri == inner.uri
    store.delete("j/obj/a")
    assert not store.exists("j/obj/a")
    assert store.delete_prefix("j/") == 1


def test_the_key_never_shows(job_key, tmp_path):
    store = SignedStore(LocalDirStore(str(tmp_path)), job_key)
    assert store.root == os.path.realpath(tmp_path)  # inner attributes pass through
    msg = TaskMessage("job", "t0", "f", "job/fn/x", job_key=job_key)
    for text in (repr(store), repr(msg), str(msg)):
        assert job_key.hex() not in text and repr(job_key) not in text
    with pytest.raises(ValueError, match="32 random bytes"):
        SignedStore(MemoryStore(), b"short")


def test_create_tags_and_the_first_writer_wins(inner, job_key):
    """The fenced write through the signed store (14.11): tagged like ``put``; a second
    create leaves the first value, which still passes its check."""
    store = SignedStore(inner, job_key)
    assert store.create("j/obj/t", [b"fir", b"st"]) == 5
    assert store.create("j/obj/t", b"second") is None
    assert store.get("j/obj/t") == bytearray(b"first")
    assert bytes(inner.get("j/obj/t"))[5:] == store.tag("j/obj/t", [memoryview(b"first")])
