"""lambdaflow: a Ray-style distributed dataflow runtime for Python on AWS Lambda.

    import lambdaflow as lf

    @lf.remote
    def square(x):
        return x * x

    with lf.init(backend="processes"):
        print(lf.get([square.remote(i) for i in range(10)]))

Backends: ``threads`` (tests), ``processes`` (local default for real jobs) and
``lambda`` (AWS Lambda, objects through S3). See DESIGN.md for the contract.
"""

from lambdaflow._version import __version__
from lambdaflow.api import (
    RemoteFunction,
    Runtime,
    cancel,
    get,
    init,
    put,
    remote,
    shutdown,
    stats,
    wait,
)
from lambdaflow.errors import (
    BackendError,
    ConcurrencyLimitError,
    ConfigError,
    GetTimeoutError,
    IntegrityError,
    LambdaflowError,
    ObjectLostError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from lambdaflow.events import on_upload
from lambdaflow.runtime.refs import ObjectRef

__all__ = [
    "__version__",
    "init",
    "shutdown",
    "remote",
    "get",
    "wait",
    "put",
    "cancel",
    "stats",
    "on_upload",
    "ObjectRef",
    "RemoteFunction",
    "Runtime",
    "LambdaflowError",
    "TaskError",
    "WorkerCrashedError",
    "TaskTimeoutError",
    "TaskCancelledError",
    "GetTimeoutError",
    "ObjectLostError",
    "IntegrityError",
    "BackendError",
    "ConcurrencyLimitError",
    "ConfigError",
]
