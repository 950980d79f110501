"""runtime/keys.py: the key layout and its one parser."""

from __future__ import annotations

import hashlib

from lambdaflow.runtime import keys


def test_layout():
    assert keys.function_key("j", "ab") == "j/fn/ab"
    assert keys.object_key("j", "t1") == "j/obj/t1"
    assert keys.args_key("j", "t1") == "j/args/t1"
    assert keys.result_object_id("t1") == "t1" and keys.result_object_id("t1", 2) == "t1.2"


def test_function_digest_parses_only_content_addresses():
    digest = hashlib.sha256(b"x").hexdigest()
    assert keys.function_digest(keys.function_key("job-1", digest)) == digest
    assert keys.function_digest(f"lambdaflow/job-1/fn/{digest}") == digest
    for bad in ("job/fn/", "job/fn/abc", f"job/obj/{digest}", f"job/fn/{digest.upper()}",
                f"job/fn/{digest}x"):
        assert keys.function_digest(bad) is None, bad
