"""lambdaflow.__all__ lists exactly the public names (DESIGN.md §1)."""

import lambdaflow

PUBLIC = {
    "__version__", "init", "shutdown", "remote", "get", "wait", "put", "cancel",
    "ObjectRef", "RemoteFunction", "Runtime", "stats", "on_upload",
    "LambdaflowError", "TaskError", "WorkerCrashedError", "TaskTimeoutError",
    "TaskCancelledError", "GetTimeoutError", "ObjectLostError", "BackendError",
    "ConcurrencyLimitError", "ConfigError", "IntegrityError",
}


def test_all_is_exactly_the_public_api():
    assert set(lambdaflow.__all__) == PUBLIC
    assert len(lambdaflow.__all__) == len(PUBLIC)
    for name in lambdaflow.__all__:
        assert hasattr(lambdaflow, name), name


def test_no_other_public_names():
    public = {n for n in dir(lambdaflow) if not n.startswith("_")}
    modules = {"api", "errors", "runtime", "serialization", "config", "events", "testing",
               "ops", "pipelines", "cli", "commands", "timeline", "deploy",
               "aws", "aws_codes", "limits", "variants", "deploy_settings",
               "events_bridge", "events_failed"}
    assert public - modules - PUBLIC == set()


def test_error_hierarchy():
    e = lambdaflow
    for sub in (e.WorkerCrashedError, e.TaskTimeoutError, e.TaskCancelledError):
        assert issubclass(sub, e.TaskError)
    for sub in (e.TaskError, e.GetTimeoutError, e.ObjectLostError, e.BackendError, e.ConfigError,
                e.IntegrityError):
        assert issubclass(sub, e.LambdaflowError)
    assert issubclass(e.GetTimeoutError, TimeoutError)
    assert issubclass(e.ConcurrencyLimitError, e.BackendError)
