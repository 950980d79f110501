"""Attacks from issue 14.1, on every backend: a task of another job (job A) overwrites
this job's (job B's) objects in the shared store with a pickle that creates a file when
it is unpickled. Each overwritten blob must be refused with an IntegrityError naming its
key, in the driver (a result) and in the workers (an argument, a dependency, the
function, a ``put`` value and a stored error read with ``lf.get`` inside a task), and the
file must never appear: no code of the attacker ran. What a backend keeps only in
memory, or sends over a private channel, is out of the attacker's reach (``STORED`` says
which targets each backend stores); overwriting its key there must change nothing.

Job A is a real second job: on ``processes`` and ``lambda`` a driver in a subprocess
whose task writes B's keys through the store B's URI names (the /dev/shm directory; the
S3 bucket through moto, from an environment of the Lambda emulator). On ``threads`` the
store lives in B's own process, so A is code in B's process writing through
``open_store``. Before the attack, each payload is unpickled once on purpose to show it
does run code.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import time

import cloudpickle
import pytest

import lambdaflow as lf
from lambdaflow import serialization
from lambdaflow.runtime import keys
from lambdaflow.runtime.store import open_store


class Creates:
    """Unpickling this creates ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@lf.remote
def wait_file(path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return None


@lf.remote
def blob(n):
    return b"r" * n


@lf.remote
def size_of(gate, value):
    return len(value)


@lf.remote
def victim(gate):
    return "the real function ran"


@lf.remote
def unbox(gate, box):
    return lf.get(box[0])


@lf.remote(max_retries=0)
def fails():
    raise ValueError("the original error")


#: The targets each backend keeps in its store (asserted, so the test cannot go vacuous).
ALL = {"result", "argument", "dependency", "function", "put value", "stored error"}
STORED = {"threads": {"argument", "function"},
          "processes": ALL - {"stored error"},
          "lambda": ALL}


JOB_A = """
import base64, json, sys
import lambdaflow as lf
from lambdaflow.runtime.store import open_store

@lf.remote
def overwrite(uri, items):
    store = open_store(uri)  # the raw store: job A does not hold job B's key
    for key, data in items:
        store.put(key, data)
    return len(items)

spec = json.load(open(sys.argv[1]))
items = [(k, base64.b64decode(v)) for k, v in spec["items"]]
with lf.init(**spec["config"]):
    print(lf.get(overwrite.remote(spec["uri"], items), timeout=120))
"""


def job_a_overwrites(rt, request, tmp_path, items: dict[str, bytes]) -> None:
    """Job A's task writes ``items`` (store key -> bytes) into this runtime's store."""
    uri = rt.backend.store.uri
    if rt.backend_name == "threads":
        raw = open_store(uri)
        for key, data in items.items():
            raw.put(key, data)
        return
    if rt.backend_name == "lambda":
        config = dict(request.getfixturevalue("local_aws_env").config, backend="lambda")
    else:
        config = {"backend": "processes", "num_workers": 1}
    spec = tmp_path / "job_a.json"
    spec.write_text(json.dumps({"uri": uri, "config": config, "items": [
        [k, base64.b64encode(v).decode()] for k, v in items.items()]}))
    script = tmp_path / "job_a.py"
    script.write_text(JOB_A)
    done = subprocess.run([sys.executable, str(script), str(spec)], capture_output=True,
                          text=True, timeout=180, env=dict(os.environ))
    assert done.returncode == 0 and done.stdout.strip() == str(len(items)), done.stderr[-3000:]


def test_another_jobs_overwrites_are_refused_and_run_no_code(rt, request, tmp_path):
    marker = str(tmp_path / "attacker-code-ran")
    evil_value = serialization.SIMPLE_MAGIC + pickle.dumps(Creates(marker))
    evil_function = pickle.dumps(Creates(marker))
    for payload, loader in ((evil_value, serialization.loads), (evil_function, cloudpickle.loads)):
        loader(payload)  # control: unpickled, these payloads run code
        assert os.path.exists(marker)
        os.unlink(marker)

    job, raw = rt.job_id, getattr(rt.backend.store, "inner", rt.backend.store)  # unchecked
    gate_path = str(tmp_path / "gate")
    gate = wait_file.remote(gate_path)
    result, dep, failed = blob.remote(100_000), blob.remote(100_001), fails.remote()
    assert len(lf.wait([result, dep, failed], num_returns=3, timeout=120)[0]) == 3
    put_ref = lf.put(b"p" * 100_000)
    victims = {  # read by a worker after the gate opens
        "argument": size_of.remote(gate, b"a" * 100_000),
        "dependency": size_of.remote(gate, dep),
        "function": victim.remote(gate),
        "put value": unbox.remote(gate, [put_ref]),
        "stored error": unbox.remote(gate, [failed]),
    }
    targets = {
        "result": keys.object_key(job, result.id),
        "argument": keys.args_key(job, victims["argument"].id),
        "dependency": keys.object_key(job, dep.id),
        "function": keys.function_key(job, serialization.dumps_function(victim._fn)[0]),
        "put value": keys.object_key(job, put_ref.id),
        "stored error": keys.object_key(job, failed.id),
    }
    # What each backend keeps in its store, where another job can write (the rest moves
    # only over private channels: the threads backend keeps values in the driver's
    # memory; processes send errors and a task's nested gets over the worker's pipe).
    stored = {name: key for name, key in targets.items() if name in STORED[rt.backend_name]}
    for name, key in targets.items():
        assert raw.exists(key) == (name in stored), f"{name}: {key} in the store?"

    job_a_overwrites(rt, request, tmp_path, {  # every target, stored or not
        key: evil_function if name == "function" else evil_value
        for name, key in targets.items()})
    open(gate_path, "w").close()

    if "result" in stored:
        with pytest.raises(lf.IntegrityError) as info:  # the driver reads the result
            lf.get(result)
        assert info.value.key == targets["result"]
    else:
        assert lf.get(result) == b"r" * 100_000
    expected = {"argument": 100_000, "dependency": 100_001,
                "function": "the real function ran", "put value": b"p" * 100_000}
    for name, ref in victims.items():
        if name in stored:
            with pytest.raises(lf.IntegrityError) as info:
                lf.get(ref, timeout=120)
            assert info.value.key == targets[name], name
            assert isinstance(info.value, lf.TaskError)  # raised in the worker, reported
        elif name == "stored error":
            with pytest.raises(ValueError, match="the original error"):
                lf.get(ref, timeout=120)
        else:
            assert lf.get(ref, timeout=120) == expected[name], name
    assert not os.path.exists(marker), "the attacker's pickle ran"
    assert lf.get(size_of.remote(None, b"fine")) == 4  # the job goes on
