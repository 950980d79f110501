"""Backends run task messages somewhere; ``base.py`` has the protocol they share
(``Backend``) and the optional capabilities (``Hosting``, ``Killing``).

    threads     a pool of threads in the driver (tests, debugging)
    processes   worker processes on this machine, a /dev/shm store (the default for jobs)
    lambda      AWS Lambda invocations, an S3 store
"""

from __future__ import annotations

from lambdaflow.config import Config
from lambdaflow.runtime.backends.base import Backend


def make_backend(config: Config, job_id: str) -> Backend:
    if config.backend == "threads":
        from lambdaflow.runtime.backends.threads import ThreadsBackend

        return ThreadsBackend(config.num_workers)
    if config.backend == "processes":
        from lambdaflow.runtime.backends.processes import ProcessesBackend

        return ProcessesBackend(config.num_workers, config.store_dir)
    if config.backend == "lambda":
        from lambdaflow.runtime.backends.aws_lambda import LambdaBackend

        return LambdaBackend(config, job_id)
    raise ValueError(f"unknown backend {config.backend!r}")
