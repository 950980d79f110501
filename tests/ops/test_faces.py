"""Tests of lambdaflow.ops.faces on real photos and videos made by
examples/classroom/make_testdata.py (photos fetched from PyPI once, then cached)."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

faces = pytest.importorskip("lambdaflow.ops.faces")
pytest.importorskip("dlib", reason="needs dlib: pip install 'lambdaflow[faces]'")
pytest.importorskip("av", reason="needs PyAV: pip install 'lambdaflow[video]'")

ROOT = Path(__file__).resolve().parents[2]


def _make_testdata():
    spec = importlib.util.spec_from_file_location(
        "make_testdata", ROOT / "examples" / "classroom" / "make_testdata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mtd():
    return _make_testdata()


@pytest.fixture(scope="module")
def photos(mtd):
    try:
        return mtd.fetch_photos()
    except mtd.DownloadError as exc:
        if not mtd.pypi_reachable():
            pytest.skip(f"PyPI is unreachable, cannot fetch the test photos: {exc}")
        raise


@pytest.fixture(scope="module")
def data(mtd, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("classroom")
    mapping = mtd.generate(out, count=3)
    return out, mapping


@pytest.fixture(scope="module")
def known(data):
    return faces.load_encodings(data[0] / "encoding")


def _enc(rgb):
    assert faces.face_encodings(rgb)
    return faces.encode_image(rgb)  # the largest face


# --------------------------------------------------------------------- encodings


def test_same_person_matches_and_different_people_do_not(photos):
    obama, obama2 = _enc(photos["obama"]), _enc(photos["obama2"])
    biden, hopper = _enc(photos["biden"]), _enc(photos["hopper"])
    assert obama.shape == (128,)
    same = faces.face_distance(np.stack([obama]), obama2)[0]
    assert same < 0.6
    assert all(faces.face_distance(np.stack([biden, hopper]), obama) > 0.6)
    known = faces.KnownFaces(("Obama", "Biden", "Hopper"), np.stack([obama, biden, hopper]))
    m = faces.match(obama2, known)
    assert m.name == "Obama" and m.distance == pytest.approx(same)
    assert faces.match(_enc(photos["collins"]), known).name is None


def test_match_respects_tolerance(photos):
    obama, obama2 = _enc(photos["obama"]), _enc(photos["obama2"])
    known = faces.KnownFaces(("Obama",), np.stack([obama]))
    assert faces.match(obama2, known, tolerance=0.1) == (None, pytest.approx(
        faces.face_distance(known.encodings, obama2)[0]), "Obama")


def test_face_encodings_of_an_image_without_faces_is_empty():
    assert faces.face_encodings(np.zeros((120, 160, 3), np.uint8)) == []


def test_face_encodings_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="HxWx3"):
        faces.face_encodings(np.zeros((120, 160), np.uint8))


def test_load_encodings_from_path_and_bytes(data):
    path = data[0] / "encoding"
    known = faces.load_encodings(path)
    assert known.names == ("Barack Obama", "Joe Biden", "Grace Hopper", "Eileen Collins")
    assert known.encodings.shape == (4, 128)
    assert faces.load_encodings(str(path)) is known  # cached per process
    from_bytes = faces.load_encodings(path.read_bytes())
    assert from_bytes.names == known.names
    assert faces.load_encodings(path.read_bytes()) is from_bytes


def test_load_encodings_reloads_a_changed_file(tmp_path):
    path = tmp_path / "encoding"
    path.write_bytes(pickle.dumps({"name": ["a"], "encoding": [np.zeros(128)]}))
    first = faces.load_encodings(path)
    path.write_bytes(pickle.dumps({"name": ["a", "b"], "encoding": [np.zeros(128)] * 2}))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    assert faces.load_encodings(path) is not first
    assert faces.load_encodings(path).names == ("a", "b")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not a pickle at all", "not a readable pickle"),
        (pickle.dumps([1, 2]), "top level is a list"),
        (pickle.dumps({"name": ["a"]}), "missing key"),
        (pickle.dumps({"name": ["a", "b"], "encoding": [np.zeros(128)]}), "2 names but 1"),
        (pickle.dumps({"name": ["a"], "encoding": [np.zeros(64)]}), "shape \\(64,\\)"),
        (pickle.dumps({"name": [3], "encoding": [np.zeros(128)]}), "not a non-empty string"),
        (pickle.dumps({"name": [], "encoding": []}), "no people"),
        (pickle.dumps({"name": ["a"], "encoding": [np.full(128, np.nan)]}), "NaN"),
    ],
)
def test_malformed_encoding_file_is_a_clear_error(tmp_path, payload, message):
    path = tmp_path / "encoding"
    path.write_bytes(payload)
    with pytest.raises(faces.EncodingFileError, match=message) as info:
        faces.load_encodings(path)
    assert str(path) in str(info.value)
    assert "make_testdata.py" in str(info.value)  # says how to fix it


def test_encoding_file_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "encoding"
    path.write_bytes(pickle.dumps({"name": ["a"], "encoding": [Evil()]}))
    with pytest.raises(faces.EncodingFileError, match="refusing to load"):
        faces.load_encodings(path)


def test_missing_encoding_file(tmp_path):
    with pytest.raises(faces.EncodingFileError, match="cannot read"):
        faces.load_encodings(tmp_path / "nope")


# ------------------------------------------------------------------------ frames


def test_sample_frames_keeps_one_frame_per_second(data):
    video = data[0] / "videos" / "test_0.mp4"  # 3 s at 10 fps
    samples = list(faces.sample_frames(video))
    assert [round(s.time_s, 3) for s in samples] == [0.0, 1.0, 2.0]
    assert samples[0].rgb.shape == (240, 320, 3) and samples[0].rgb.dtype == np.uint8
    assert len(list(faces.sample_frames(video, every_s=0.5))) == 6
    assert len(list(faces.sample_frames(video, max_samples=2))) == 2


def test_sample_frames_reads_bytes_and_file_objects(data):
    raw = (data[0] / "videos" / "test_1.mp4").read_bytes()
    assert len(list(faces.sample_frames(raw))) == 3
    assert len(list(faces.sample_frames(io.BytesIO(raw)))) == 3


@pytest.mark.parametrize("name", ["test_not_a_video.mp4", "test_corrupt.mp4"])
def test_sample_frames_rejects_non_videos(data, name):
    with pytest.raises(faces.VideoDecodeError, match=name):
        list(faces.sample_frames(data[0] / "videos" / name))


# ------------------------------------------------------------------- recognition


@pytest.mark.parametrize("strategy", ["first", "majority"])
def test_recognize_video_finds_each_person(data, known, strategy):
    expected = {"test_0.mp4": "Barack Obama", "test_1.mp4": "Joe Biden",
                "test_2.mp4": "Grace Hopper", "test_no_record.mp4": "Eileen Collins"}
    for name, person in expected.items():
        result = faces.recognize_video(data[0] / "videos" / name, known, strategy=strategy)
        assert (result.name, result.status) == (person, "matched"), result
        assert result.distance < 0.6
    first = faces.recognize_video(data[0] / "videos" / "test_0.mp4", known)
    assert first.frames_examined == 1  # stopped at the first confident match


def test_recognize_video_without_faces(data, known):
    result = faces.recognize_video(data[0] / "videos" / "test_no_face.mp4", known)
    assert result.name is None and result.status == "no_face"
    assert result.frames_examined == 3 and "no face" in result.reason


def test_recognize_video_with_an_unknown_face(data, known):
    result = faces.recognize_video(data[0] / "videos" / "test_unknown_face.mp4", known)
    assert result.name is None and result.status == "unknown_face"
    assert result.distance > 0.6 and "tolerance" in result.reason


def test_recognize_video_of_a_non_video(data, known):
    with pytest.raises(faces.VideoDecodeError, match="not a readable video"):
        faces.recognize_video(data[0] / "videos" / "test_not_a_video.mp4", known)


def test_recognize_video_checks_its_arguments(data, known):
    with pytest.raises(ValueError, match="strategy"):
        faces.recognize_video(data[0] / "videos" / "test_0.mp4", known, strategy="best")


def test_encodings_are_the_same_from_several_threads(photos):
    import concurrent.futures

    images = [photos[k] for k in ("obama2", "biden", "hopper", "collins")]
    serial = [faces.encode_image(im) for im in images]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(faces.encode_image, images * 2))
    for got, want in zip(parallel, serial * 2):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_encodings_accepts_every_pickle_protocol_and_array_forms(tmp_path, protocol):
    rows = np.random.default_rng(0).normal(size=(3, 128))
    path = tmp_path / "encoding"
    payload = {"name": ["a", "b", "c"], "encoding": [rows[0], rows[1].tolist(), rows[2]]}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    known = faces.load_encodings(path)
    np.testing.assert_array_equal(known.encodings, rows)
    path.write_bytes(pickle.dumps({"name": ("a", "b", "c"), "encoding": rows}, protocol))
    os.utime(path, ns=(2, 2))
    np.testing.assert_array_equal(faces.load_encodings(path).encodings, rows)
