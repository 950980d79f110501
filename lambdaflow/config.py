"""Runtime settings: ``init(**config)`` keyword arguments, else ``LAMBDAFLOW_*``
environment variables, else defaults.

Every field below can be given as ``lambdaflow.init(name=value)`` or as the environment
variable ``LAMBDAFLOW_<NAME>`` (upper case): for example ``LAMBDAFLOW_BACKEND=lambda``,
``LAMBDAFLOW_NUM_WORKERS=4``, ``LAMBDAFLOW_PROGRESS=1``. Explicit arguments win.

The AWS credential fields (``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``) let credentials travel with the config, as ``local_aws().config``
does with the local stand-ins' credentials. They are used only to build the lambda
backend's clients and its S3 store (``lambdaflow.aws``); they are left out of ``repr``
and never go into logs, the store or task messages (workers use their own role).
Without them, boto3's own chain applies (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``, SSO,
instance roles).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields

BACKENDS = ("threads", "processes", "lambda")


@dataclass
class Config:
    #: "threads" | "processes" | "lambda"
    backend: str = "threads"
    #: worker threads / processes (default: threads max(8, 2*CPUs); processes: CPUs)
    num_workers: int | None = None
    #: values up to this many bytes travel inline in messages; larger ones via the store
    inline_limit: int = 64 * 1024
    #: tqdm bar for get()/wait() over many refs
    progress: bool = False
    #: keep the job's objects in the store after shutdown()
    keep_objects: bool = False
    #: processes: directory of the local store (default /dev/shm/lambdaflow or tmp)
    store_dir: str | None = None
    #: defaults for tasks that do not set them
    max_retries: int = 3
    #: bytes of finished tasks' specs kept to rebuild lost objects (oldest dropped first)
    max_lineage_bytes: int = 256 * 1024 * 1024
    # ---- lambda backend
    function_name: str | None = None
    bucket: str | None = None
    prefix: str = "lambdaflow/"
    region: str | None = None
    lambda_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    #: in-flight invocations (also the invoker pool size)
    max_concurrency: int = 64
    #: deployed memory tiers, e.g. "1769,3008,10240": with function_name "<name>-1769",
    #: a task's memory_mb picks the smallest tier function "<name>-<MB>" that fits
    memory_tiers: str = ""
    #: seconds to wait for one invoke's reply; None: the function's configured timeout
    #: + Lambda's init allowance + a margin (from GetFunctionConfiguration). A reply that
    #: does not come in time fails the task with TaskTimeoutError; it is never re-sent
    invoke_timeout_s: float | None = None
    #: seconds one invocation keeps being retried while Lambda throttles it (429), fails
    #: on its side (5xx) or wakes an inactive function (ResourceNotReadyException)
    retry_budget_s: float = 300.0
    #: a task that waits for subtasks whose invocations stay throttled (429) this long
    #: while none finishes raises ConcurrencyLimitError (tasks that submit tasks)
    nested_patience_s: float = 10.0
    #: where run stats are written after shutdown (lambda backend; "" disables)
    stats_path: str = ".lambdaflow/last-run.json"
    #: settings written by `lambdaflow deploy`, read for fields not given otherwise
    #: (lambda backend; "" disables; see lambdaflow/deploy_settings.py)
    deploy_file: str = ".lambdaflow/deployment.json"
    #: AWS credentials for the lambda backend and its store (else boto3's own chain)
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)

    @classmethod
    def valid_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


#: Fields whose default is None but whose values are numbers.
_NUMERIC_NONE = {"num_workers": int, "invoke_timeout_s": float}


def _parse(value: str, default: object, name: str) -> object:
    kind = type(default) if default is not None else _NUMERIC_NONE.get(name, str)
    try:
        if kind is bool:
            return value.strip().lower() in ("1", "true", "yes", "on")
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except ValueError:
        from lambdaflow.errors import ConfigError

        raise ConfigError(f"LAMBDAFLOW_{name.upper()}={value!r} is not a valid {kind.__name__}") from None
    return value


def resolve(backend: str | None = None, **overrides: object) -> Config:
    """Build a Config from keyword overrides, ``LAMBDAFLOW_*`` variables and defaults.

    Unknown names raise TypeError listing the valid ones.
    """
    valid = Config.valid_names()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown lambdaflow.init() option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(valid)}"
        )
    cfg = Config()
    given = set(overrides)
    for f in fields(Config):
        env = os.environ.get(f"LAMBDAFLOW_{f.name.upper()}")
        if env is not None and env != "":
            default = f.default if f.default is not dataclasses.MISSING else None
            setattr(cfg, f.name, _parse(env, default, f.name))
            given.add(f.name)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    if backend is not None:
        cfg.backend = backend
    if cfg.backend not in BACKENDS:
        from lambdaflow.errors import ConfigError

        raise ConfigError(
            f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    from lambdaflow import deploy_settings

    deploy_settings.apply(cfg, given)
    return cfg
