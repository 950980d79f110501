"""A task's invoke payload, kept under Lambda's synchronous request limit.

    payload(msg, store, threads) -> bytes      {"lf": 1, "task": <base64 msgpack message>}

    packed message <= PAYLOAD_BUDGET ──> sent as is
    else ──> the largest inline dependencies move to the store, under keys derived from
             (job, task, index) so a retried invocation rewrites the same keys, until the
             excess is saved (a key costs ~64 bytes in the message); the puts run on up
             to ``threads`` threads (many small dependencies)
         ──> still too big: the call's arguments move to ``args_key`` as well
         ──> still too big (thousands of dependencies): BackendError naming the task

The worker reads moved values back by key (``worker.load_arguments``); the reply side is
``lambda_entry``'s.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

from lambdaflow import limits
from lambdaflow.errors import BackendError
from lambdaflow.runtime import keys
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import TaskMessage

#: The packed task message may be this big before base64 + JSON fill the request limit.
PAYLOAD_BUDGET = limits.base64_budget(limits.SYNC_REQUEST_BYTES)
#: What moving one dependency to the store adds back to the message (its key and size).
KEY_COST = 64


def payload(msg: TaskMessage, store: Store, threads: int = 8) -> bytes:
    """The JSON body that invokes ``msg``; may move its values to ``store`` (and
    changes ``msg`` to point at them)."""
    packed = msg.pack()
    if len(packed) > PAYLOAD_BUDGET:
        packed = _spill(msg, store, len(packed) - PAYLOAD_BUDGET, threads)
    data = json.dumps({"lf": 1, "task": base64.b64encode(packed).decode("ascii")}).encode()
    if len(data) > limits.SYNC_REQUEST_BYTES:
        raise BackendError(
            f"task {msg.name}[{msg.task_id}]: its invoke payload is {len(data)} bytes even "
            f"after moving its values to S3 (Lambda's limit: {limits.SYNC_REQUEST_BYTES} "
            "bytes); pass fewer dependencies per task"
        )
    return data


def _spill(msg: TaskMessage, store: Store, excess: int, threads: int) -> bytes:
    order = sorted((i for i, d in enumerate(msg.deps) if "inline" in d),
                   key=lambda i: -len(msg.deps[i]["inline"]))
    chosen, saved = [], 0
    for i in order:
        if saved >= excess:
            break
        chosen.append(i)
        saved += len(msg.deps[i]["inline"]) - KEY_COST
    moves = [(i, keys.object_key(msg.job_id, f"{msg.task_id}-dep{i}")) for i in chosen]

    def put(move: tuple[int, str]) -> None:
        store.put(move[1], msg.deps[move[0]]["inline"])

    if len(moves) > 4 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(moves))) as pool:
            list(pool.map(put, moves))
    else:
        for move in moves:
            put(move)
    for i, key in moves:
        msg.deps[i] = {"key": key, "size": msg.deps[i].get("size")}
    packed = msg.pack()
    if len(packed) > PAYLOAD_BUDGET and msg.args is not None:
        key = keys.args_key(msg.job_id, msg.task_id)
        store.put(key, msg.args)
        msg.args, msg.args_key = None, key
        packed = msg.pack()
    return packed


__all__ = ["KEY_COST", "PAYLOAD_BUDGET", "payload"]
