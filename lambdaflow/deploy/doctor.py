"""``lambdaflow doctor``: is this machine ready to run jobs on this deployment?

Each check is independent and returns a :class:`Check` (``ok`` / ``warn`` / ``fail`` /
``skip``, what was found, and the fix); a failing check does not stop the others::

    credentials     STS GetCallerIdentity: which account and identity
    region          the region the clients use, and where it came from
    settings        the settings file deploy wrote (deploy_settings.py)
    quotas          Lambda GetAccountSettings: account concurrency vs max_concurrency
    functions       the deployment's functions vs the settings file (status drift)
    image variant   the version ping of every function: lambdaflow, Python (bytecode!),
                    cloudpickle and image variant vs this driver's
    role            the functions' role and its inline policy vs the one deploy writes
    test invoke     a real task through the lambda backend: the worker reaches the job
                    prefix, and a key not yet written is "absent" (S3's 404, which needs
                    s3:ListBucket; a 403 here breaks exists() and nested get())
    keep-alive      every open connection to the Lambda endpoint has SO_KEEPALIVE with
                    an idle time under 60 s (NAT gateways drop idle flows at 350 s)

Against the local stand-ins (``lambdaflow local-aws``) every check runs too; the ones a
stand-in cannot answer say so (``warn``) instead of failing.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from lambdaflow import deploy_settings, variants
from lambdaflow.deploy import functions, iam
from lambdaflow.deploy.clients import AwsClients
from lambdaflow.deploy.errors import code
from lambdaflow.deploy.plan import StatusReport, status
from lambdaflow.deploy.settings import GRANT_FIELDS, DeploySettings
from lambdaflow.errors import ConfigError, LambdaflowError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
KEEPALIVE_MAX_IDLE_S = 60


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.name:<14} {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


def run_checks(clients: AwsClients, settings_file: str, *, invoke: bool = True,
               config: dict[str, Any] | None = None) -> list[Check]:  # fmt: skip
    """Every check, in the order of the module docstring. ``config`` goes to
    ``lambdaflow.init`` for the test invoke (endpoints when run on the stand-ins)."""
    checks: list[Check] = []
    try:
        _, account = clients.identity()
        arn = clients.sts.get_caller_identity()["Arn"]
        checks.append(Check("credentials", OK, f"account {account} as {arn}"))
    except ConfigError as exc:
        checks.append(Check("credentials", FAIL, str(exc),
                            "aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/..."))  # fmt: skip
        return checks
    source = "LAMBDAFLOW_REGION" if os.environ.get("LAMBDAFLOW_REGION") else (
        "--region / the profile / AWS_REGION")  # fmt: skip
    checks.append(Check("region", OK, f"{clients.region} (from {source})"))
    record = _settings(settings_file, checks)
    checks.append(_quotas(clients, record))
    if record is None:
        return checks
    if record["region"] != clients.region:
        checks[1] = Check("region", FAIL, f"{clients.region}, but the deployment is in "
                          f"{record['region']}", f"--region {record['region']}")  # fmt: skip
    try:
        report = status(clients, record["deployment"], ping=True, record=record)
        unlisted = ""
    except LambdaflowError as exc:  # e.g. the emulator has no ListTags
        report, unlisted = StatusReport(), str(exc).splitlines()[0][:200]
    checks.append(_functions(clients, report, record, unlisted))
    checks.append(_variants(report))
    checks.append(_role(clients, report, record))
    if invoke:
        checks.extend(_test_invoke(record, config or {}))
    else:
        checks.append(Check("test invoke", SKIP, "--no-invoke"))
    return checks


def _settings(path: str, checks: list[Check]) -> dict[str, Any] | None:
    try:
        record = deploy_settings.read(path)
    except FileNotFoundError:
        checks.append(Check("settings", FAIL, f"{path}: no such file",
                            "run `lambdaflow deploy` here, or --settings-file PATH"))  # fmt: skip
        return None
    except ConfigError as exc:
        checks.append(Check("settings", FAIL, str(exc)))
        return None
    checks.append(Check("settings", OK, f"{path}: deployment {record['deployment']}, "
                        f"{len(record['functions'])} functions, variant "
                        f"{record['image_variant']}"))  # fmt: skip
    return record


def _quotas(clients: AwsClients, record: dict[str, Any] | None) -> Check:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        limits = clients.lambda_.get_account_settings()["AccountLimit"]
    except (ClientError, BotoCoreError) as exc:
        return Check("quotas", WARN, f"GetAccountSettings not answered ({code(exc) or exc})",
                     "check Lambda quotas in the Service Quotas console")  # fmt: skip
    total = limits.get("ConcurrentExecutions")
    free = limits.get("UnreservedConcurrentExecutions")
    from lambdaflow.config import resolve

    wanted = resolve(backend="lambda").max_concurrency
    detail = f"account concurrency {total}, unreserved {free}; max_concurrency {wanted}"
    if free is not None and wanted > free:
        return Check("quotas", WARN, detail, f"ask for more concurrency, or set "
                     f"LAMBDAFLOW_MAX_CONCURRENCY={free} (beyond it Lambda answers 429)")
    return Check("quotas", OK, detail)


def _functions(clients: AwsClients, report: Any, record: dict[str, Any],
               unlisted: str = "") -> Check:  # fmt: skip
    if not report.functions:
        try:
            exists = functions.get_function(clients.lambda_, record["function_name"])
        except LambdaflowError:
            exists = None
        if exists is not None:  # e.g. the emulator, which keeps no tags
            why = f" ({unlisted})" if unlisted else ""
            return Check("functions", WARN, f"{record['function_name']} exists but is not "
                         f"listed as deployment {record['deployment']}'s{why}: made by "
                         "hand, or an endpoint without tags")  # fmt: skip
        return Check("functions", FAIL, f"none of deployment {record['deployment']} live",
                     "run `lambdaflow deploy`")  # fmt: skip
    names = ", ".join(f.config["FunctionName"] for f in report.functions)
    if report.drift:
        return Check("functions", FAIL, f"{names}; differs from the settings file: "
                     + "; ".join(report.drift), "rerun `lambdaflow deploy`")  # fmt: skip
    return Check("functions", OK, f"{names} match the settings file")


def _variants(report: Any) -> Check:
    if not report.functions:
        return Check("image variant", SKIP, "no deployed function to ping")
    errors = [f.error for f in report.functions if f.error]
    try:
        mine = variants.driver_variant().name
    except ConfigError as exc:
        return Check("image variant", FAIL, str(exc))
    if errors:
        return Check("image variant", FAIL, errors[0].splitlines()[0][:400])
    seen = {f.worker.image_variant for f in report.functions if f.worker}
    if seen - {mine, ""}:
        return Check("image variant", WARN, f"workers run {sorted(seen)}, this driver "
                     f"matches {mine}", f"deploy --variant {mine}")  # fmt: skip
    worker = report.functions[0].worker
    shown = worker.image_variant or "(not reported)"
    return Check("image variant", OK, f"{shown}: lambdaflow {worker.lambdaflow_version}, "
                 f"Python {worker.python_version} as this driver")  # fmt: skip


def _role(clients: AwsClients, report: Any, record: dict[str, Any]) -> Check:
    if not report.functions:
        return Check("role", SKIP, "no deployed function to read the role of")
    roles = {f.config.get("Role", "") for f in report.functions}
    if len(roles) != 1:
        return Check("role", FAIL, f"the functions run as {sorted(roles)}: expected one")
    role_name = roles.pop().rsplit("/", 1)[-1]
    try:
        live = iam.live_policy(clients.iam, role_name)
        partition, account = clients.identity()
        grants: dict[str, Any] = {
            k: tuple(v) for k, v in record.get("grants", {}).items() if k in GRANT_FIELDS}
        settings = DeploySettings(
            bucket=record["bucket"], name=record["deployment"], prefix=record["prefix"],
            memory_tiers=tuple(int(m) for m in record["memory_tiers"].split(",")),
            image_variant=record["image_variant"], **grants)  # fmt: skip
        wanted = iam.worker_policy(settings, partition=partition, account=account,
                                   region=record["region"])  # fmt: skip
    except LambdaflowError as exc:
        return Check("role", WARN, f"{role_name}: cannot read its policy ({exc})")
    if live is None:
        return Check("role", FAIL, f"{role_name} has no inline policy lambdaflow-worker",
                     "rerun `lambdaflow deploy`")  # fmt: skip
    if json.dumps(live, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        return Check("role", FAIL, f"{role_name}: its policy differs from deploy's",
                     "rerun `lambdaflow deploy` (it rewrites the policy)")  # fmt: skip
    return Check("role", OK, f"{role_name}: {len(wanted['Statement'])} statements, every "
                 "resource named, as deploy writes them")  # fmt: skip


def _probe(store_uri: str, missing_key: str) -> dict[str, Any]:
    """Runs on the worker: can it see the job prefix, and is a missing key absent?"""
    import platform

    from lambdaflow.runtime.store import open_store

    return {"absent": not open_store(store_uri).exists(missing_key),
            "python": platform.python_version()}  # fmt: skip


def _test_invoke(record: dict[str, Any], config: dict[str, Any]) -> list[Check]:
    import lambdaflow as lf

    missing = f"doctor-{uuid.uuid4().hex}/not-written"
    store_uri = f"s3://{record['bucket']}/{record['prefix']}"
    checks: list[Check] = []
    try:
        with lf.init(backend="lambda", function_name=record["function_name"],
                     memory_tiers=record["memory_tiers"], bucket=record["bucket"],
                     prefix=record["prefix"], region=record["region"],
                     **config) as rt:  # fmt: skip
            probe = lf.remote(max_retries=0)(_probe)
            result = lf.get(probe.remote(store_uri, missing), timeout=120)
            endpoint = config.get("lambda_endpoint_url") or (
                f"https://lambda.{record['region']}.amazonaws.com")  # fmt: skip
            from lambdaflow.runtime.backends.aws_lambda import LambdaBackend

            assert isinstance(rt.backend, LambdaBackend)
            checks.append(_keepalive(endpoint, rt.backend.invoke_socket_options()))
    except LambdaflowError as exc:
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else repr(exc)
        return [Check("test invoke", FAIL, first,
                      "see the function's log group; `lambdaflow status`"),
                Check("keep-alive", SKIP, "no invoke connection")]  # fmt: skip
    if result["absent"]:
        checks.insert(0, Check("test invoke", OK, f"a task ran on {record['function_name']} "
                               f"(Python {result['python']}); a key not yet written is "
                               "absent"))  # fmt: skip
    else:
        checks.insert(0, Check("test invoke", FAIL, "exists() said a never-written key "
                               "exists"))  # fmt: skip
    return checks


def _keepalive(endpoint: str, found: list[tuple[int, int | None]]) -> Check:
    """Check (SO_KEEPALIVE, TCP_KEEPIDLE) of the backend's invoke connections to
    ``endpoint``, as the kernel reports them."""
    if not found:
        return Check("keep-alive", WARN, f"no open connection to {endpoint} to inspect")
    bad = [f for f in found if not f[0] or (f[1] or 0) >= KEEPALIVE_MAX_IDLE_S]
    if bad:
        return Check("keep-alive", FAIL, f"{len(bad)} of {len(found)} connections to "
                     f"{endpoint} lack TCP keep-alive under {KEEPALIVE_MAX_IDLE_S} s idle "
                     f"(found {bad[0]})", "an idle long task's connection is dropped by "
                     "NAT (350 s): upgrade lambdaflow")  # fmt: skip
    return Check("keep-alive", OK, f"{len(found)} connection(s) to {endpoint}: keep-alive, "
                 f"idle {max(f[1] or 0 for f in found)} s")  # fmt: skip

