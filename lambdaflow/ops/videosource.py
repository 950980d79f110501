"""Where video bytes come from: local paths, ``s3://`` objects (ranged GETs), file-likes.

    source ──open_container──> path ──────────────────────────┐
                               s3://bucket/key ─> S3File ─────┼─> av.open ─> container
                               file-like (seek(0)) ───────────┘   (errors -> VideoError)

    acquire(source, keep=True) ─> a container, reused from this thread's one-slot cache
                                  when the same unchanged file (or S3 ETag) was released
    release(container, key)    ─> back into the slot (the previous occupant is closed)

``S3File`` is a seekable read-only file over one object: each miss fetches
``max(wanted, readahead)`` bytes with one ranged GET, so the demuxer reads the index and
then only the chunks it seeks to, never the whole object. The container cache lets a
worker that runs consecutive chunks of one video skip re-opening (probing, codec setup,
S3 HEAD + index GETs): the next chunk seeks, which flushes the decoder. Only path and
S3 sources are cached, keyed by (path, size, mtime, inode) or (URI, size, ETag) and the
decoder thread count, one container per thread (its decoder's frame buffers stay
allocated too, so the next chunk does not page-fault them in again).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from typing import IO, Any, Union

log = logging.getLogger(__name__)

Source = Union[str, "os.PathLike[str]", IO[bytes]]
#: Bytes fetched per S3 GET beyond what the reader asked for (sequential read-ahead).
S3_READAHEAD = 2 * 1024 * 1024


class VideoError(ValueError):
    """A video source is missing, unreadable, not a video, has no video stream, or is
    truncated; the message names the source and the problem."""


# ----------------------------------------------------------------------------- sources

def s3_client() -> Any:
    """The process's S3 client for video sources, built by :mod:`lambdaflow.aws` from
    the environment: ``LAMBDAFLOW_S3_ENDPOINT_URL``, then botocore's own resolution
    (``AWS_ENDPOINT_URL_S3``, ...); region and credentials likewise (cached per
    environment)."""
    from lambdaflow import aws

    return aws.shared_client("s3", attempts=5, pool=32)


class S3File(io.RawIOBase):
    """A seekable, read-only file over one S3 object, read with ranged GETs.

    Each miss fetches ``max(wanted, readahead)`` bytes from the current position and keeps
    them as the buffer, so the demuxer's small sequential reads cost one GET per
    ``readahead`` bytes and a seek costs at most one GET. ``ranges`` lists the
    (offset, length) of every GET.
    """

    def __init__(self, uri: str, client: Any = None, readahead: int | None = None) -> None:
        super().__init__()
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key:
            raise VideoError(f"{uri}: not an S3 object URI; expected s3://bucket/key")
        self.name, self.bucket, self.key = uri, bucket, key
        self._client = client if client is not None else s3_client()
        self._readahead = max(int(readahead or S3_READAHEAD), 4096)
        self._pos, self._buf, self._buf_start = 0, b"", 0
        self.ranges: list[tuple[int, int]] = []
        try:
            head = self._client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # botocore ClientError; imported lazily with boto3
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
                raise VideoError(f"{uri}: no such S3 object; check the bucket and key") from exc
            raise VideoError(f"{uri}: cannot read the S3 object ({exc})") from exc
        self.size = int(head["ContentLength"])

    @property
    def bytes_fetched(self) -> int:
        return sum(n for _, n in self.ranges)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(base + int(offset), 0)
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), self.size - self._pos)
        if want <= 0:
            return 0
        lo = self._pos - self._buf_start
        if lo < 0 or lo + want > len(self._buf):
            end = min(self._pos + max(want, self._readahead), self.size) - 1
            resp = self._client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={self._pos}-{end}"
            )
            self._buf, self._buf_start = resp["Body"].read(), self._pos
            self.ranges.append((self._pos, len(self._buf)))
            lo = 0
            want = min(want, len(self._buf))
        view[:want] = self._buf[lo : lo + want]
        self._pos += want
        return want


def source_name(source: Source) -> str:
    """How errors and logs name a source."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", None) or f"<{type(source).__name__}>")


def open_container(source: Source, *, client: Any = None) -> Any:
    """``av.open`` the source for reading; translate failures into ``VideoError``."""
    import av

    name = source_name(source)
    opened: Any = source
    if isinstance(source, (str, os.PathLike)) and name.startswith("s3://"):
        opened = S3File(name, client=client)
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.exists(name):
            raise VideoError(f"{name}: no such file; check the path")
        if os.path.isdir(name):
            raise VideoError(f"{name}: is a directory, not a video file")
    elif hasattr(source, "seek"):
        source.seek(0)
    try:
        container = av.open(opened if not isinstance(opened, os.PathLike) else name, "r")
    except av.FFmpegError as exc:
        raise VideoError(
            f"{name}: not a readable video (unknown format, corrupt or "
            f"truncated): {exc.strerror or exc}"
        ) from exc
    try:
        video_stream(container, name)
    except VideoError:
        container.close()
        raise
    return container


#: AV_DISPOSITION_ATTACHED_PIC: a still image (cover art) stored as a one-packet stream.
ATTACHED_PIC = 0x0400


def _disposition(stream: Any) -> int:
    """The stream's disposition bits (an IntFlag in PyAV >= 15, an enum flag before)."""
    value = getattr(stream, "disposition", 0)
    return int(getattr(value, "value", value) or 0)


def video_stream(container: Any, name: str) -> Any:
    """The stream a job decodes: the first video stream that is not an attached picture.

    Music files carry cover art as a one-frame "video" stream with the attached_pic
    disposition (an ID3 APIC frame, a Matroska image attachment); it is not video.
    """
    videos = list(container.streams.video)
    moving = [s for s in videos if not _disposition(s) & ATTACHED_PIC]
    if moving:
        return moving[0]
    if videos:
        raise VideoError(
            f"{name}: no video stream (only cover art: an attached picture); give a video file"
        )
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise VideoError(f"{name}: has no video stream (streams: {', '.join(kinds)})")


# ------------------------------------------------------------------ container reuse

_slot = threading.local()


def _cache_key(source: Source, client: Any, threads: int) -> tuple | None:
    if not isinstance(source, (str, os.PathLike)):
        return None  # file-likes: the caller owns their position
    name = os.fspath(source)
    if name.startswith("s3://"):
        bucket, _, key = name[len("s3://") :].partition("/")
        try:
            head = (client or s3_client()).head_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - open_container reports it properly
            return None
        return (name, head.get("ContentLength"), head.get("ETag"), threads)
    try:
        st = os.stat(name)
    except OSError:
        return None
    return (name, st.st_size, st.st_mtime_ns, st.st_ino, threads)


def acquire(
    source: Source, *, client: Any = None, threads: int = 1, keep: bool = False
) -> tuple[Any, tuple | None]:
    """An open container for ``source`` with its decoder set to ``threads`` (1: no
    threads; 0: FFmpeg's choice), and the cache key to hand back to ``release``. With
    ``keep`` the container may come from (and go back to) this thread's cache."""
    key = _cache_key(source, client, threads) if keep else None
    entry = getattr(_slot, "entry", None)
    if key is not None and entry is not None and entry[0] == key:
        _slot.entry = None
        return entry[1], key
    container = open_container(source, client=client)
    codec = video_stream(container, source_name(source)).codec_context
    if threads == 1:
        codec.thread_count = 1
    else:
        codec.thread_type = "AUTO"
        codec.thread_count = threads
    return container, key


def release(container: Any, key: tuple | None, reusable: bool = True) -> None:
    """Close ``container``, or keep it in this thread's slot when it has a key."""
    if key is None or not reusable:
        container.close()
        return
    old = getattr(_slot, "entry", None)
    _slot.entry = (key, container)
    if old is not None:
        old[1].close()


def close_cached() -> None:
    """Close this thread's cached container, if any."""
    entry = getattr(_slot, "entry", None)
    _slot.entry = None
    if entry is not None:
        entry[1].close()
