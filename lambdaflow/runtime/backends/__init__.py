"""Backends run task messages somewhere. They share one small protocol:

    backend.submit(task: TaskMessage) -> concurrent.futures.Future[TaskResult]
    backend.shutdown()
    backend.store        the Store its workers read and write
    backend.name         "threads" | "processes" | "lambda"
    backend.eager_delete whether freed objects are deleted from the store at once

A backend never raises for a task's failure: the future's result says what happened
(``TaskResult.status``). The future fails only when the backend itself cannot work.
"""

from __future__ import annotations

from typing import Any

from lambdaflow.config import Config


def make_backend(config: Config, job_id: str) -> Any:
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
