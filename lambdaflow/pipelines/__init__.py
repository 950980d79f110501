"""Pipelines: ops composed into DAGs on the current runtime.

- ``video_histogram(source, batch=50, bins=16)``: THIS's fuse model, one task per
  keyframe-aligned chunk, (frames, 3, bins) histograms.
- ``video_inference(source, model, mode="fuse"|"split", ...)``: MXNet classification of
  every frame, decoding and predicting in one task (fuse) or decode tasks feeding
  inference tasks through the object store (split).
"""

from lambdaflow.pipelines.histogram import HistogramResult, video_histogram
from lambdaflow.pipelines.inference import InferenceResult, video_inference

__all__ = ["HistogramResult", "InferenceResult", "video_histogram", "video_inference"]
