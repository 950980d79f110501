"""The processes backend's wire (backends/process_wire.py): frames, the running stack and
the result log that outlives a crashed worker."""

from __future__ import annotations

import msgpack

from lambdaflow.runtime.backends import process_wire as wire


def test_frames_split_at_their_boundaries():
    buf = bytearray(wire.frame(wire.GET, 1, ["a"], 1, True) + wire.frame(wire.REPLY, 1, []))
    tail = wire.frame(wire.TASKS, [])
    buf += tail[:3]
    assert list(wire.split_frames(buf)) == [[wire.GET, 1, ["a"], 1, True], [wire.REPLY, 1, []]]
    assert bytes(buf) == tail[:3]
    buf += tail[3:]
    assert list(wire.split_frames(buf)) == [[wire.TASKS, []]] and not buf


def test_running_stack(tmp_path):
    stack = wire.RunningStack(str(tmp_path / "run"), create=True)
    assert stack.entries() == []
    stack.push(4, 10.0)
    stack.push(9, 11.5)  # run inline on top of 4
    reader = wire.RunningStack(stack.path)  # the driver's own view of the file
    assert reader.entries() == [(4, 10.0), (9, 11.5)]
    stack.pop()
    assert reader.entries() == [(4, 10.0)]


def test_result_log_frames_and_survives_its_writer(tmp_path):
    log = wire.ResultLog(str(tmp_path / "log"), create=True)
    entries = [msgpack.packb([i, ["t", 0, "ok", [], None, {}]]) for i in (1, 2)]
    for e in entries:
        log.append(e)
    frame = log.results_frame()
    assert list(wire.split_frames(bytearray(frame)))[0][1][1][0] == 2
    reader = wire.ResultLog(log.path)  # after the writer died
    assert [seq for seq, _ in reader.read()] == [1, 2]
    log.clear()
    assert reader.read() == [] and log.fits(1000)


def test_result_log_commits_each_entry_in_the_file(tmp_path):
    # The writer keeps its length in memory; the file's own header must still say what
    # is committed after every append and clear, since the driver reads only the file.
    log = wire.ResultLog(str(tmp_path / "log"), create=True)
    reader = wire.ResultLog(log.path)
    for round_ in range(3):
        for i in range(4):
            log.append(msgpack.packb([round_ * 10 + i, ["t", 0, "ok", [], None, {}]]))
            assert [seq for seq, _ in reader.read()] == [round_ * 10 + j for j in range(i + 1)]
        log.clear()
        assert reader.read() == []


def test_running_stack_refuses_past_its_depth(tmp_path):
    stack = wire.RunningStack(str(tmp_path / "run"), create=True)
    reader = wire.RunningStack(stack.path)
    assert all(stack.push(i, float(i)) for i in range(stack.MAX_DEPTH))
    assert not stack.push(99, 99.0)
    assert len(reader.entries()) == stack.MAX_DEPTH and reader.entries()[-1][0] == 63
    for _ in range(stack.MAX_DEPTH + 2):
        stack.pop()
    assert reader.entries() == []
    stack.push(7, 1.0)
    assert reader.entries() == [(7, 1.0)]


def test_results_frames_of_any_count_decode_as_msgpack_packs_them(tmp_path):
    # The RESULTS head is precomputed for the common counts and packed beyond them: both
    # must decode to the entries, as msgpack's own packb of the whole frame would.
    log = wire.ResultLog(str(tmp_path / "log"), create=True)
    for count in (1, 15, 16, 63, 64, 70):
        items = [[i, [f"t{i}", 0, "ok", [], None, {"n": i}]] for i in range(count)]
        for item in items:
            log.append(msgpack.packb(item))
        frame = log.results_frame()
        assert frame[wire.LEN.size:] == msgpack.packb([wire.RESULTS, items])
        assert list(wire.split_frames(bytearray(frame))) == [[wire.RESULTS, items]]
        log.clear()


def test_a_framer_packs_what_frame_packs_frame_after_frame():
    framer = wire.Framer()
    for fields in ([wire.TASKS, [[1, ["x", b"\x00" * 40, None, {}]]]], [wire.REVOKE],
                   [wire.INLINE, 7, [[2, ["y"]]]]):
        assert framer.frame(*fields) == wire.frame(*fields)
