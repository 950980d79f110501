"""StoreWriter (runtime/store_writer.py): a scheduler's writes and deletes, in order, on
a thread of their own; a failed delete is logged and never stops the ones after it."""

from __future__ import annotations

import threading

from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.store_writer import StoreWriter


class Recording(MemoryStore):
    def __init__(self, fail_deletes: int = 0) -> None:
        super().__init__()
        self.ops: list[tuple[str, str, str]] = []
        self.fail_deletes = fail_deletes

    def put(self, key, data):
        self.ops.append(("put", key, threading.current_thread().name))
        super().put(key, data)

    def delete(self, key):
        self.ops.append(("delete", key, threading.current_thread().name))
        if self.fail_deletes:
            self.fail_deletes -= 1
            raise OSError("the store refused")
        super().delete(key)


def test_writes_and_deletes_run_in_order_on_the_writer_thread():
    store = Recording()
    w = StoreWriter(store)
    w.put("k", b"1")
    w.delete("k")
    w.put("k", b"2")
    assert w.barrier(5)
    assert store.get("k") == b"2"
    assert [(op, key) for op, key, _ in store.ops] == [("put", "k"), ("delete", "k"),
                                                       ("put", "k")]
    assert {name for _, _, name in store.ops} == {"lambdaflow-store"}
    w.stop()


def test_a_failed_delete_does_not_stop_the_writes_after_it():
    store = Recording(fail_deletes=1)
    w = StoreWriter(store)
    w.delete("gone")
    w.put("k", b"v")
    assert w.barrier(5)
    assert store.get("k") == b"v"
    w.stop()


def test_no_thread_until_the_first_write_and_stop_ends_it():
    w = StoreWriter(MemoryStore())
    assert w.barrier(0)  # nothing submitted: nothing to wait for
    assert w._thread is None
    w.put("k", b"v")
    thread = w._thread
    assert thread is not None and thread.is_alive()
    w.stop()
    assert not thread.is_alive()
