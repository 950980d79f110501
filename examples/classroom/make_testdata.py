"""Generate classroom test data from real photos: videos, ``encoding``, ``student_data.json``
and ``mapping``.

    python examples/classroom/make_testdata.py --out data/ [--count 100] [--cache DIR]

Photos (fetched from PyPI with pip, except matplotlib's when it is installed), cached in
``--cache`` / ``$LAMBDAFLOW_TESTDATA_CACHE`` / ``~/.cache/lambdaflow/testdata``, so a
second run and the tests download nothing:

- Barack Obama: face_recognition 1.3.0 sdist, tests/test_images (MIT; US government
  portraits). obama.jpg is enrolled; his videos show obama2.jpg / obama3.jpg.
- Joe Biden: the same sdist, biden.jpg. Enrolled; videos show it mirrored.
- Grace Hopper: matplotlib's sample_data/grace_hopper.jpg (US Navy, public domain).
  Enrolled; videos show it mirrored.
- Eileen Collins: scikit-image's data/astronaut.png (NASA, public domain). Enrolled but
  without a student record: test_no_record.mp4.
- A person from Labeled Faces in the Wild: scikit-image's data/lfw_subset.npy, face #83
  (upscaled from 25x25). Not enrolled: test_unknown_face.mp4.

Only Obama has several photos, so for the others the video shows a mirrored, rescaled crop
of the enrolled photo on a different background. Output in ``--out``::

    videos/test_0.mp4 .. test_{count-1}.mp4   cycling Obama, Biden, Hopper; each has its own
                                              background, face size, position, pan and an
                                              optional first second without a face
    videos/test_no_face.mp4                   backgrounds and shapes only
    videos/test_unknown_face.mp4              the LFW person
    videos/test_no_record.mp4                 Eileen Collins
    videos/test_not_a_video.mp4               text, not a video
    videos/test_corrupt.mp4                   a real video truncated to 60% (no moov atom)
    encoding                                  pickle {'name': [...], 'encoding': [...]}
    student_data.json                         [{"id", "name", "major", "year"}, ...]
    mapping                                   test_N.mp4:major,year  |  test_x.mp4:error=STATUS

Videos are H.264 (libx264 through PyAV), 320x240, 10 fps, 3 s by default.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

log = logging.getLogger("make_testdata")

FACE_RECOGNITION_SDIST = "face-recognition==1.3.0"
SKIMAGE_WHEEL = "scikit-image"
CACHE_ENV = "LAMBDAFLOW_TESTDATA_CACHE"
UNKNOWN_LFW_INDEX = 83  # farthest LFW subset face (>= 0.8) from the enrolled people


class DownloadError(RuntimeError):
    """pip could not fetch a photo source; ``pypi_reachable`` tells whether it is offline."""


@dataclass(frozen=True)
class Student:
    key: str
    name: str
    major: str
    year: str


STUDENTS = [
    Student("obama", "Barack Obama", "Political Science", "senior"),
    Student("biden", "Joe Biden", "History", "freshman"),
    Student("hopper", "Grace Hopper", "Computer Science", "junior"),
]
NO_RECORD = Student("collins", "Eileen Collins", "", "")


def default_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lambdaflow" / "testdata")


def pypi_reachable(timeout: float = 10.0) -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=timeout).close()
        return True
    except OSError:
        return False


def _pip_download(cache: Path, args: list[str], pattern: str) -> Path:
    found = sorted(cache.glob(pattern))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), *args]
    log.info("fetching %s", " ".join(args))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(pattern))
    if proc.returncode != 0 or not found:
        raise DownloadError(
            f"pip download {' '.join(args)} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}; check network access to PyPI or pass --cache "
            "with a directory holding the file"
        )
    return found[-1]


def fetch_photos(cache: Path | None = None) -> dict[str, np.ndarray]:
    """RGB arrays of every source photo, keyed obama, obama2, obama3, biden, hopper,
    collins, lfw; extracted once into ``cache/photos``."""
    cache = Path(cache) if cache else default_cache()
    photos = cache / "photos"
    names = ["obama", "obama2", "obama3", "biden", "hopper", "collins", "lfw"]
    if not all((photos / f"{n}.png").exists() for n in names):
        photos.mkdir(parents=True, exist_ok=True)
        sdist = _pip_download(cache, ["--no-binary", ":all:", "--no-build-isolation",
                                      FACE_RECOGNITION_SDIST], "face_recognition-*.tar.gz")
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                stem = Path(member.name).stem
                if "/tests/test_images/" in member.name and stem in ("obama", "obama2",
                                                                       "obama3", "biden"):
                    _save(photos / f"{stem}.png", Image.open(tar.extractfile(member)))
        wheel = _pip_download(cache, ["--only-binary", ":all:", SKIMAGE_WHEEL],
                              "scikit_image-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            _save(photos / "collins.png", Image.open(io.BytesIO(
                zf.read("skimage/data/astronaut.png"))))
            lfw = np.load(io.BytesIO(zf.read("skimage/data/lfw_subset.npy")))
        face = Image.fromarray((lfw[UNKNOWN_LFW_INDEX] * 255).astype(np.uint8))
        _save(photos / "lfw.png", face.resize((200, 200), Image.BICUBIC))
        _save(photos / "hopper.png", Image.open(_grace_hopper(cache)))
    return {n: np.array(Image.open(photos / f"{n}.png").convert("RGB")) for n in names}


def _grace_hopper(cache: Path) -> Path | io.BytesIO:
    try:
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    except ImportError:
        wheel = _pip_download(cache, ["--only-binary", ":all:", "matplotlib"],
                              "matplotlib-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith("sample_data/grace_hopper.jpg"))
            return io.BytesIO(zf.read(name))


def _save(path: Path, im: Image.Image) -> None:
    im = im.convert("RGB")
    im.thumbnail((800, 800))  # detection on 2000px photos is slow and gains nothing
    im.save(path)


def face_crop(rgb: np.ndarray) -> tuple[Image.Image, float]:
    """A square crop around the largest face (head and some shoulders) and the face's
    width as a fraction of the crop."""
    from lambdaflow.ops.faces import face_locations

    rects = face_locations(rgb)
    if not rects:
        raise ValueError("no face in a source photo; the photo cache is damaged, delete it")
    r = max(rects, key=lambda r: r.area())
    cx, cy, size = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2, r.width()
    half = size * 1.1
    box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
    im = Image.fromarray(rgb)
    crop = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (128, 128, 128))
    crop.paste(im.crop(box).convert("RGB"), (0, 0))
    return crop, size / crop.width


def background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = rng.integers(3)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == 0:  # vertical gradient
        t = np.linspace(0, 1, h)[:, None, None]
        arr = (c1 * (1 - t) + c2 * t).repeat(w, axis=1)
    elif kind == 1:  # stripes
        period = int(rng.integers(8, 40))
        stripes = ((np.arange(w) // period) % 2)[None, :, None]
        arr = np.where(stripes, c1, c2).repeat(h, axis=0).astype(float)
    else:  # smooth blotches
        small = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
        arr = np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=float)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def write_video(path: Path, frames: list[Image.Image], fps: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26"}
        for im in frames:
            out.mux(stream.encode(av.VideoFrame.from_image(im)))
        out.mux(stream.encode())


def render(crop: tuple[Image.Image, float] | None, seed: int, *, size: tuple[int, int],
           fps: int, seconds: float, mirror: bool = False,
           intro_s: float = 0.0) -> list[Image.Image]:
    """Frames of one video: a background, shapes, and the face crop panning across."""
    rng = np.random.default_rng(seed)
    w, h = size
    bg = background(rng, w, h)
    shapes = [(rng.integers(0, w), rng.integers(0, h), int(rng.integers(8, 30)),
               tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(4)]
    face = None
    if crop is not None:
        im, frac = crop
        face_px = int(rng.integers(int(0.30 * h), int(0.45 * h)))
        side = min(int(face_px / frac), h - 4, w - 4)
        face = im.resize((side, side), Image.BICUBIC)
        face = ImageOps.mirror(face) if mirror else face
        x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        x1, y1 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    n = int(seconds * fps)
    frames = []
    for i in range(n):
        frame = bg.copy()
        draw = ImageDraw.Draw(frame)
        for k, (sx, sy, r, color) in enumerate(shapes):
            dx = (i * (k + 1) * 2) % w
            draw.ellipse((sx + dx - r, sy - r, sx + dx + r, sy + r), fill=color)
        if face is not None and i / fps >= intro_s:
            t = i / max(n - 1, 1)
            frame.paste(face, (int(x0 + (x1 - x0) * t), int(y0 + (y1 - y0) * t)))
        frames.append(frame)
    return frames


def generate(out: Path, *, count: int = 6, cache: Path | None = None, special: bool = True,
             size: tuple[int, int] = (320, 240), fps: int = 10,
             seconds: float = 3.0) -> dict[str, str]:
    """Write the data set into ``out``; returns the mapping {video file name: expected}."""
    from lambdaflow.ops.faces import encode_image

    out = Path(out)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    photos = fetch_photos(cache)
    crops = {k: face_crop(photos[k]) for k in ("obama2", "obama3", "biden", "hopper",
                                                "collins", "lfw")}
    enrolled = {"Barack Obama": "obama", "Joe Biden": "biden", "Grace Hopper": "hopper",
                NO_RECORD.name: "collins"}
    with open(out / "encoding", "wb") as f:
        pickle.dump({"name": list(enrolled),
                     "encoding": [encode_image(photos[k]) for k in enrolled.values()]}, f)
    (out / "student_data.json").write_text(json.dumps(
        [{"id": i + 1, "name": s.name, "major": s.major, "year": s.year}
         for i, s in enumerate(STUDENTS)], indent=1) + "\n")

    mapping: dict[str, str] = {}
    kw = {"size": size, "fps": fps, "seconds": seconds}
    for i in range(count):
        student = STUDENTS[i % len(STUDENTS)]
        key = student.key
        if key == "obama":
            key = "obama2" if (i // len(STUDENTS)) % 2 == 0 else "obama3"
        frames = render(crops[key], seed=i, mirror=student.key != "obama",
                        intro_s=float(i % 4 == 3), **kw)
        write_video(videos / f"test_{i}.mp4", frames, fps)
        mapping[f"test_{i}.mp4"] = f"{student.major},{student.year}"
    if special:
        write_video(videos / "test_no_face.mp4", render(None, 1001, **kw), fps)
        mapping["test_no_face.mp4"] = "error=no_face"
        write_video(videos / "test_unknown_face.mp4", render(crops["lfw"], 1002, **kw), fps)
        mapping["test_unknown_face.mp4"] = "error=unknown_face"
        write_video(videos / "test_no_record.mp4",
                    render(crops["collins"], 1003, mirror=True, **kw), fps)
        mapping["test_no_record.mp4"] = "error=no_record"
        (videos / "test_not_a_video.mp4").write_text("lecture notes, week 3\n" * 50)
        mapping["test_not_a_video.mp4"] = "error=bad_video"
        good = (videos / "test_no_face.mp4").read_bytes()
        (videos / "test_corrupt.mp4").write_bytes(good[: int(len(good) * 0.6)])
        mapping["test_corrupt.mp4"] = "error=bad_video"
    (out / "mapping").write_text("".join(f"{k}:{v}\n" for k, v in mapping.items()))
    log.info("wrote %d videos, encoding, student_data.json and mapping to %s",
             len(mapping), out)
    return mapping


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--count", type=int, default=6, help="regular videos (default 6)")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"download cache (default ${CACHE_ENV} or ~/.cache/lambdaflow/testdata)")
    p.add_argument("--no-special", action="store_true", help="omit the bad-input cases")
    p.add_argument("--size", default="320x240", help="WxH, even numbers (default 320x240)")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    w, h = (int(v) for v in args.size.lower().split("x"))
    try:
        generate(args.out, count=args.count, cache=args.cache, special=not args.no_special,
                 size=(w, h), fps=args.fps, seconds=args.seconds)
    except DownloadError as exc:
        print(f"make_testdata: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
