"""Compare the output CSVs with the expected answers and print accuracy and latency.

    python examples/classroom/check.py --mapping mapping --results results/
    python examples/classroom/check.py --mapping mapping --results results/ \\
        --bucket classroom-output --uploads uploads.json [--endpoint-url URL]

The second form first downloads every CSV of the output bucket into ``--results`` and
writes ``results/timings.json`` ({video: {"uploaded": t, "finished": t, "processing": s}},
epoch seconds: upload times from workload.py's ``--record``, finish times from the CSV's
``finished-at`` metadata, else its LastModified; processing time in the function from
its ``processing-seconds``).

``mapping`` lines are ``test_N.mp4:major,year`` (the seed's format), or
``test_x.mp4:error=STATUS`` for a video whose CSV must report that error status (see
app.py). Comparison ignores case and surrounding spaces and treats ``freshmen`` as
``freshman``. Latency is per video, from upload to output (queueing included);
processing is the time spent in the function; total time is from the first upload to the
last output.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMINGS = "timings.json"


def normalise(text: str) -> str:
    """Lower case, spaces collapsed and stripped per comma-separated field, and
    ``freshmen`` -> ``freshman``."""
    fields = (re.sub(r"\s+", " ", f.strip().lower()) for f in text.split(","))
    return ",".join(re.sub(r"\bfreshmen\b", "freshman", f) for f in fields)


def read_mapping(path: Path) -> dict[str, str]:
    expected = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        video, sep, answer = line.partition(":")
        if not sep:
            raise SystemExit(f"mapping {path} line {n}: {line!r} is not 'video:major,year'")
        expected[video.strip()] = answer.strip()
    return expected


def read_result(path: Path) -> tuple[str, str]:
    """(answer, detail): answer is ``major,year`` or ``error=STATUS``, as in a mapping."""
    rows = list(csv.DictReader(path.read_text().splitlines()))
    if len(rows) != 1:
        return "error=malformed_output", f"{len(rows)} data rows"
    row = rows[0]
    if row.get("error"):
        return f"error={row['error'].split(':', 1)[0].strip()}", row["error"]
    return f"{row.get('major', '')},{row.get('year', '')}", row.get("name", "")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Report:
    total: int = 0
    correct: int = 0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)  # video, expected, got
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    latencies: dict[str, float] = field(default_factory=dict)
    processing: dict[str, float] = field(default_factory=dict)
    total_s: float | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def lines(self) -> list[str]:
        out = [f"accuracy: {self.correct}/{self.total} = {self.accuracy:.1%}"]
        out.append(f"missing outputs: {len(self.missing)}"
                   + (f" ({', '.join(self.missing[:20])})" if self.missing else ""))
        out += [f"  wrong: {v}: expected {e!r}, got {g!r}" for v, e, g in self.wrong[:20]]
        if self.extra:
            out.append(f"outputs not in the mapping: {len(self.extra)}")
        if self.latencies:
            lat = list(self.latencies.values())
            out.append(f"latency per video: p50 {percentile(lat, 50):.2f} s, "
                       f"p95 {percentile(lat, 95):.2f} s, max {max(lat):.2f} s "
                       f"({len(lat)} videos)")
        if self.processing:
            proc = list(self.processing.values())
            out.append(f"processing per video (in the function): p50 "
                       f"{percentile(proc, 50):.2f} s, p95 {percentile(proc, 95):.2f} s")
        if self.total_s is not None:
            out.append(f"total time: {self.total_s:.2f} s (first upload to last output)"
                       + (f", {len(self.latencies) / self.total_s:.2f} videos/s"
                          if self.total_s > 0 else ""))
        return out


def check(mapping: Path, results: Path) -> Report:
    expected = read_mapping(mapping)
    results = Path(results)
    timings = {}
    if (results / TIMINGS).exists():
        timings = json.loads((results / TIMINGS).read_text())
    report = Report(total=len(expected))
    seen = set()
    for video, answer in expected.items():
        csv_path = results / (video.rsplit(".", 1)[0] + ".csv")
        seen.add(csv_path.name)
        if not csv_path.exists():
            report.missing.append(video)
            continue
        got, detail = read_result(csv_path)
        if normalise(got) == normalise(answer):
            report.correct += 1
        else:
            report.wrong.append((video, answer, f"{got} ({detail})"))
    report.extra = sorted(p.name for p in results.glob("*.csv") if p.name not in seen)
    for video, t in timings.items():
        if t.get("uploaded") is not None and t.get("finished") is not None:
            report.latencies[video] = t["finished"] - t["uploaded"]
        if t.get("processing") is not None:
            report.processing[video] = t["processing"]
    ups = [t["uploaded"] for t in timings.values() if t.get("uploaded") is not None]
    ends = [t["finished"] for t in timings.values() if t.get("finished") is not None]
    if ups and ends:
        report.total_s = max(ends) - min(ups)
    return report


def fetch_results(s3: Any, bucket: str, dest: Path, uploads: dict[str, float],
                  suffix: str = ".mp4") -> int:
    """Download every CSV of ``bucket`` into ``dest`` and write ``dest/timings.json``;
    returns the number of CSVs."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    timings = {v: {"uploaded": t, "finished": None} for v, t in uploads.items()}
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".csv"):
                continue
            reply = s3.get_object(Bucket=bucket, Key=obj["Key"])
            name = obj["Key"].rsplit("/", 1)[-1]
            (dest / name).write_bytes(reply["Body"].read())
            count += 1
            meta = reply.get("Metadata", {})
            finished = meta.get("finished-at")
            finished = float(finished) if finished else obj["LastModified"].timestamp()
            video = name[:-4] + suffix
            entry = timings.setdefault(video, {"uploaded": None})
            entry["finished"] = finished
            if meta.get("processing-seconds"):
                entry["processing"] = float(meta["processing-seconds"])
    (dest / TIMINGS).write_text(json.dumps(timings, indent=1))
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mapping", required=True, type=Path)
    p.add_argument("--results", required=True, type=Path, help="directory of output CSVs")
    p.add_argument("--bucket", help="download the CSVs from this output bucket first")
    p.add_argument("--uploads", type=Path, help="upload times written by workload.py")
    p.add_argument("--endpoint-url", default=None)
    args = p.parse_args(argv)
    if args.bucket:
        import boto3

        uploads = json.loads(args.uploads.read_text()) if args.uploads else {}
        fetch_results(boto3.client("s3", endpoint_url=args.endpoint_url), args.bucket,
                      args.results, uploads)
    print("\n".join(check(args.mapping, args.results).lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
