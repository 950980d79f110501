"""Upload a folder of videos to the input bucket, all at once, and record when each upload
finished (the start of its latency in check.py).

    python examples/classroom/workload.py --folder videos/ --bucket classroom-input \\
        [--concurrency 16] [--endpoint-url URL] [--record uploads.json]

``--record`` writes ``{"test_0.mp4": <epoch seconds when its PUT returned>, ...}``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("classroom.workload")


def upload_folder(s3: Any, bucket: str, folder: Path, *, concurrency: int = 16,
                  prefix: str = "") -> dict[str, float]:
    """PUT every file of ``folder`` (not recursive) as ``prefix + name``, ``concurrency``
    at a time; returns {name: epoch time the PUT completed}."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    if not files:
        raise SystemExit(f"workload: folder {folder} has no files to upload")

    def put(path: Path) -> tuple[str, float]:
        s3.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())
        return path.name, time.time()

    with concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as pool:
        done = dict(pool.map(put, files))
    log.info("uploaded %d files to s3://%s/%s", len(done), bucket, prefix)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", required=True, type=Path)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint (moto server locally)")
    p.add_argument("--record", type=Path, default=None, help="write upload times here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import boto3

    s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
    times = upload_folder(s3, args.bucket, args.folder, concurrency=args.concurrency,
                          prefix=args.prefix)
    if args.record:
        args.record.write_text(json.dumps(times, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
