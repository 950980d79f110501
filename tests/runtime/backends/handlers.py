"""Handlers the emulator runs in place of the real worker (not a test module)."""

from __future__ import annotations

from lambdaflow.runtime.lambda_entry import lambda_handler


def old_worker(event, context):
    """A worker image built for another driver: Python 3.9, older cloudpickle and
    lambdaflow, and a variant name; otherwise the real handler."""
    if event.get("lambdaflow") == "ping":
        return {"lambdaflow_version": "0.0.1", "python_version": "3.9.18",
                "cloudpickle_version": "2.2.1", "variant": "py3.9"}
    return lambda_handler(event, context)


def pre_variant_worker(event, context):
    """A worker from before the ping reported cloudpickle and the variant."""
    if event.get("lambdaflow") == "ping":
        import platform

        from lambdaflow._version import __version__

        return {"lambdaflow_version": __version__, "python_version": platform.python_version()}
    return lambda_handler(event, context)
