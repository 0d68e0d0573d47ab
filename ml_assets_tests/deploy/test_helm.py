"""The Kubernetes values files validate against the dagster chart's own values.schema.json (and
the user-deployments subchart's), vendored in deploy/helm/schema; they name the image, the secrets
and the instance settings the platform needs. No network: the schemas' Kubernetes `$ref`s resolve
to an empty schema.

Helm validates the values *merged with the chart's defaults*, which supply every key the chart
requires; our files hold only what we change, so the check drops `required` and keeps everything
else (types, enums, and `additionalProperties: false`, which catches a misspelt key)."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from ml_assets.instance import instance_config
from ml_assets_tests.helpers import REPO

HELM = REPO / "deploy" / "helm"
CHART_SCHEMA = HELM / "schema" / "values.schema.json"
SUBCHART_SCHEMA = HELM / "schema" / "charts" / "dagster-user-deployments" / "values.schema.json"
IMAGE = "registry.example.com/ml_assets"


class _Anything(dict):
    """An empty schema at every JSON pointer: what an unfetched Kubernetes definition becomes."""

    def __missing__(self, key):
        return _Anything()


def _without_required(node):
    if isinstance(node, dict):
        return {k: _without_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


def _validator(schema_path):
    schema = _without_required(json.loads(schema_path.read_text()))

    def offline(uri: str):  # Kubernetes definitions by URL: accepted as given, never fetched
        return Resource.from_contents(_Anything(), default_specification=DRAFT7)

    return jsonschema.Draft7Validator(schema, registry=Registry(retrieve=offline))


def _errors(schema_path, values) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(schema_path).iter_errors(values)]


def values() -> dict:
    return yaml.safe_load((HELM / "values.yaml").read_text())


def subchart_values() -> dict:
    return yaml.safe_load((HELM / "values-user-deployments.yaml").read_text())


def test_vendored_schemas_are_the_charts():
    chart = json.loads(CHART_SCHEMA.read_text())
    sub = json.loads(SUBCHART_SCHEMA.read_text())
    assert chart["title"] == "DagsterHelmValues" and "dagster-user-deployments" in chart["properties"]
    assert sub["title"] == "DagsterUserDeploymentsHelmValues"
    assert "commit" in (HELM / "schema" / "SOURCE.md").read_text()


def test_values_validate_against_the_dagster_chart_schema():
    assert _errors(CHART_SCHEMA, values()) == []


def test_user_deployment_values_validate_against_the_subchart_schema():
    assert _errors(SUBCHART_SCHEMA, subchart_values()) == []


@pytest.mark.parametrize(("path", "value", "expected"), [
    (["dagsterDaemon", "runCoordinater"], {}, "runCoordinater"),  # a typo
    (["runLauncher", "type"], "K8sLauncher", "K8sLauncher"),
    (["dagster-user-deployments", "deployments", 0, "port"], "3030", "3030"),
    (["postgresql", "service", "port"], "five", "five"),
])
def test_the_schema_check_catches_mistakes(path, value, expected):
    broken = copy.deepcopy(values())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = _errors(CHART_SCHEMA, broken)
    assert errors and any(expected in e for e in errors), errors


def test_values_name_the_image_the_secrets_and_irsa():
    v = values()
    deployment = v["dagster-user-deployments"]["deployments"][0]
    assert v["dagsterWebserver"]["image"]["repository"] == IMAGE
    assert deployment["image"]["repository"] == IMAGE
    assert subchart_values()["deployments"][0]["image"] == deployment["image"]
    assert deployment["codeServerArgs"][:2] == ["-m", "ml_assets.definitions"]
    assert v["global"]["postgresqlSecretName"] == "ml-assets-postgresql"
    assert v["generatePostgresqlPasswordSecret"] is False and v["postgresql"]["enabled"] is False
    assert v["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert {"name": "ml-assets-env"} in deployment["envSecrets"]
    assert {"name": "ml-assets-env"} in v["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert "eks.amazonaws.com/role-arn" in v["serviceAccount"]["annotations"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["ENV"] == "production" and env["S3_BUCKET"] and env["ML_ASSETS_EXECUTOR"] == "k8s"
    text = (HELM / "values.yaml").read_text().lower()
    for secret_word in ("aws_secret_access_key", "password: change", "pii_key:"):
        assert secret_word not in text


def test_values_carry_the_production_instance_settings():
    prod = instance_config("postgres")
    daemon = values()["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == prod["concurrency"]["runs"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == prod["concurrency"]["runs"]["tag_concurrency_limits"]
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": 1,
                                    "retryOnAssetOrOpFailure": False}
    assert daemon["runMonitoring"]["enabled"] is True
    assert values()["concurrency"]["pools"]["defaultLimit"] == prod["concurrency"]["pools"][
        "default_limit"]
    assert values()["telemetry"] == {"enabled": False}
