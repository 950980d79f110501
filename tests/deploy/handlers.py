"""Lambda handlers for the version-ping tests, run by the emulator's awslambdaric."""

from __future__ import annotations


def stale_ping(event, context):
    """A worker built from an older lambdaflow."""
    return {"lambdaflow_version": "0.0.1", "python_version": "3.11.0"}


def broken(event, context):
    raise ImportError("No module named 'mxnet'")
