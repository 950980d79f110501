from __future__ import annotations

import json

import pytest

from lambdaflow._version import __version__
from lambdaflow.deploy import functions, iam
from lambdaflow.deploy.settings import DeploySettings
from lambdaflow.errors import ConfigError

from .conftest import push_fake_image

IDS = {"partition": "aws", "account": "123456789012", "region": "us-east-1"}


@pytest.fixture
def role(clients, settings) -> str:
    return iam.ensure_role(clients.iam, settings, **IDS)[1]


@pytest.fixture
def image(clients, settings) -> tuple[str, str]:
    """(image URI, digest) of a fake image pushed under the default tag."""
    _, repo_uri = functions.ensure_repository(clients.ecr, settings)
    tag = settings.variant.image_tag(__version__)
    digest = push_fake_image(clients, settings.repository_name, tag)
    return functions.default_image_uri(repo_uri, settings), digest


def test_repository_created_tagged_then_unchanged(clients, settings):
    change, uri = functions.ensure_repository(clients.ecr, settings)
    assert (change.action, change.name) == ("created", "lftest")
    assert uri.endswith(".dkr.ecr.us-east-1.amazonaws.com/lftest")
    change, _ = functions.ensure_repository(clients.ecr, settings)
    assert change.action == "unchanged"
    assert (
        functions.delete_repository(clients.ecr, "lftest", "lftest").action == "deleted"
    )
    assert (
        functions.delete_repository(clients.ecr, "lftest", "lftest").action == "absent"
    )


def test_image_digest(clients, settings, image):
    uri, digest = image
    assert functions.image_digest(clients.ecr, uri, "123456789012") == digest
    assert (
        functions.image_digest(clients.ecr, "public.ecr.aws/x/y:1", "123456789012")
        is None
    )
    assert (
        functions.image_digest(clients.ecr, uri, "999999999999") is None
    )  # other account
    with pytest.raises(LookupError):
        functions.image_digest(
            clients.ecr, uri.replace(__version__, "nope"), "123456789012"
        )


def test_function_created_from_image_with_settings(clients, settings, role, image):
    uri, digest = image
    change = functions.ensure_function(
        clients.lambda_, settings, 3008, role, uri, digest
    )
    assert (change.action, change.name) == ("created", "lftest-3008")
    live = clients.lambda_.get_function(FunctionName="lftest-3008")
    config = live["Configuration"]
    assert config["PackageType"] == "Image"
    assert (config["MemorySize"], config["Timeout"], config["Role"]) == (
        3008,
        900,
        role,
    )
    assert config["Environment"]["Variables"]["LAMBDAFLOW_BUCKET"] == settings.bucket
    assert live["Code"]["ImageUri"] == uri
    assert live["Tags"] == {
        "lambdaflow:deployment": "lftest",
        "lambdaflow:image-digest": digest,
        "lambdaflow:env": "",
    }
    assert uri.endswith(f":{__version__}-{settings.image_variant}")
    again = functions.ensure_function(
        clients.lambda_, settings, 3008, role, uri, digest
    )
    assert again.action == "unchanged"


def test_function_update_changes_only_what_differs(clients, settings, role, image):
    uri, digest = image
    functions.ensure_function(clients.lambda_, settings, 1769, role, uri, digest)
    shorter = DeploySettings(bucket=settings.bucket, name=settings.name, timeout_s=300)
    change = functions.ensure_function(
        clients.lambda_, shorter, 1769, role, uri, digest
    )
    assert (change.action, change.details) == ("updated", ["timeout 900 -> 300"])
    config = clients.lambda_.get_function_configuration(FunctionName="lftest-1769")
    assert config["Timeout"] == 300

    # A new image under the same tag (new digest): the code is updated.
    change = functions.ensure_function(
        clients.lambda_, shorter, 1769, role, uri, "sha256:" + "f" * 64
    )
    assert (change.action, change.details) == ("updated", [f"image {uri}"])
    tags = clients.lambda_.get_function(FunctionName="lftest-1769")["Tags"]
    assert tags["lambdaflow:image-digest"] == "sha256:" + "f" * 64


def test_function_not_made_by_deploy_is_refused(clients, settings, role, image):
    uri, _ = image
    clients.lambda_.create_function(
        FunctionName="lftest-1769",
        Role=role,
        PackageType="Image",
        Code={"ImageUri": uri},
    )
    with pytest.raises(ConfigError, match="not created by `lambdaflow deploy"):
        functions.ensure_function(clients.lambda_, settings, 1769, role, uri, None)
    assert functions.deployment_functions(clients.lambda_, "lftest") == []


def test_deployment_functions_lists_only_tagged_tiers(clients, settings, role, image):
    uri, digest = image
    for memory in (3008, 1769):
        functions.ensure_function(clients.lambda_, settings, memory, role, uri, digest)
    clients.lambda_.create_function(
        FunctionName="lftest-512",
        Role=role,
        PackageType="Image",
        Code={"ImageUri": uri},
    )
    names = [
        c["FunctionName"]
        for c in functions.deployment_functions(clients.lambda_, "lftest")
    ]
    assert names == ["lftest-1769", "lftest-3008"]


def test_skipped_functions(settings):
    changes = functions.skipped_functions(settings)
    assert [c.action for c in changes] == ["skipped"] * 3
    assert changes[0].details == ["image not pushed yet"]
    assert json.dumps([c.line() for c in changes])


def test_redeploy_keeps_variables_it_does_not_own(clients, settings, role, image):
    """The classroom setup adds CLASSROOM_* and LAMBDAFLOW_EVENT_MODULES to the function;
    the next deploy used to replace the whole environment and drop them (13.8)."""
    uri, digest = image
    first = DeploySettings(bucket=settings.bucket, name=settings.name,
                           environment={"OLD_FLAG": "1", "MODE": "a"})  # fmt: skip
    functions.ensure_function(clients.lambda_, first, 1769, role, uri, digest)
    env = clients.lambda_.get_function_configuration(FunctionName="lftest-1769")[
        "Environment"]["Variables"]  # fmt: skip
    app_env = {"CLASSROOM_TABLE": "students", "LAMBDAFLOW_EVENT_MODULES": "classroom_app"}
    clients.lambda_.update_function_configuration(
        FunctionName="lftest-1769", Environment={"Variables": {**env, **app_env}})
    second = DeploySettings(bucket=settings.bucket, name=settings.name, timeout_s=300,
                            environment={"MODE": "b"})  # fmt: skip
    change = functions.ensure_function(clients.lambda_, second, 1769, role, uri, digest)
    assert change.action == "updated"
    env = clients.lambda_.get_function_configuration(FunctionName="lftest-1769")[
        "Environment"]["Variables"]  # fmt: skip
    assert {k: env[k] for k in app_env} == app_env  # the app's variables survive
    assert env["MODE"] == "b" and "OLD_FLAG" not in env  # dropped --env keys go
    assert env["LAMBDAFLOW_MEMORY_TIERS"] == "1769,3008,10240"
    assert env["LAMBDAFLOW_FUNCTION_NAME"] == "lftest-1769"
    again = functions.ensure_function(clients.lambda_, second, 1769, role, uri, digest)
    assert again.action == "unchanged"
