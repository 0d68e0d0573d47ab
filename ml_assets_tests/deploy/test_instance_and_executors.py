"""Choosing the instance and the executor: each environment gets its config, every new variable
fails with a message naming it, and the definitions load with each executor."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from ml_assets.config import ConfigError, load_config
from ml_assets.definitions import build_definitions
from ml_assets.defs.executors import ExecutorConfigError, executor_from_env
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.instance import (
    InstanceConfigError,
    chosen_config,
    init_instance,
    instance_config,
    instance_kind,
    main,
    render,
)
from ml_assets_tests.helpers import REPO, flights_config, flights_dict, local_storage, write_config

PG = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "dagster",
      "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_DB": "dagster"}


def test_committed_instance_files_are_what_instance_py_renders():
    assert (REPO / "dagster.yaml").read_text() == render("sqlite")
    assert (REPO / "deploy" / "dagster" / "dagster.postgres.yaml").read_text() == render("postgres")


@pytest.mark.parametrize(("env", "kind"), [(None, "sqlite"), ("development", "sqlite"),
                                           ("staging", "postgres"), ("production", "postgres")])
def test_env_chooses_sqlite_or_postgres(env, kind):
    assert instance_kind({} if env is None else {"ENV": env}) == kind


def test_production_instance_settings():
    cfg = instance_config("postgres")
    db = cfg["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"
    assert {v["env"] for k, v in db.items() if k != "scheme"} == {
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB"}
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert cfg["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": "ml_assets/training", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert cfg["concurrency"]["pools"]["default_limit"] == 1
    assert cfg["run_monitoring"]["enabled"] and cfg["run_retries"]["max_retries"] == 1
    assert cfg["telemetry"] == {"enabled": False}


def test_the_sqlite_instance_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    path = init_instance(tmp_path, {"DAGSTER_HOME": str(tmp_path)})
    with dg.DagsterInstance.from_config(str(path.parent)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.run_monitoring_enabled


@pytest.mark.parametrize("missing", sorted(PG))
def test_postgres_instance_names_each_missing_variable(missing):
    env = {**PG, "ENV": "production"}
    del env[missing]
    with pytest.raises(InstanceConfigError, match=missing) as info:
        chosen_config(env)
    assert "ENV=production uses the postgres instance" in str(info.value)


def test_empty_password_is_allowed_but_an_empty_host_is_not():
    chosen_config({**PG, "ENV": "staging", "DAGSTER_PG_PASSWORD": ""})
    with pytest.raises(InstanceConfigError, match="DAGSTER_PG_HOST"):
        chosen_config({**PG, "ENV": "staging", "DAGSTER_PG_HOST": " "})


def test_bad_port_and_bad_env_are_named():
    with pytest.raises(InstanceConfigError, match="DAGSTER_PG_PORT must be a port number"):
        chosen_config({**PG, "ENV": "staging", "DAGSTER_PG_PORT": "five"})
    with pytest.raises(InstanceConfigError, match="ENV must be one of"):
        chosen_config({"ENV": "prod"})


def test_explicit_instance_file_wins_and_bad_files_are_named(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("telemetry:\n  enabled: false\n")
    source, text = chosen_config({"ENV": "production", "DAGSTER_INSTANCE_CONFIG": str(good)})
    assert text == good.read_text() and "DAGSTER_INSTANCE_CONFIG" in source
    with pytest.raises(InstanceConfigError, match="DAGSTER_INSTANCE_CONFIG=.*no such file"):
        chosen_config({"DAGSTER_INSTANCE_CONFIG": str(tmp_path / "absent.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(InstanceConfigError, match="DAGSTER_INSTANCE_CONFIG=.*mapping"):
        chosen_config({"DAGSTER_INSTANCE_CONFIG": str(bad)})


def test_init_keeps_an_existing_file_unless_forced(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    init_instance(tmp_path, {"DAGSTER_HOME": str(tmp_path)})
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry: {enabled: false}\n"
    init_instance(tmp_path, {**PG, "ENV": "staging"}, force=True)
    assert "postgres" in yaml.safe_load((tmp_path / "dagster.yaml").read_text())["storage"]


def test_cli_init_exits_2_naming_the_missing_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for var in PG:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("DAGSTER_INSTANCE_CONFIG", raising=False)
    assert main(["init"]) == 2
    err = capsys.readouterr().err
    assert "DAGSTER_PG_HOST" in err and "DAGSTER_PG_DB" in err
    assert not (tmp_path / "dagster.yaml").exists()


# ---------------------------------------------------------------- executors
@pytest.mark.parametrize(("value", "name"), [
    (None, "multiprocess"), ("multiprocess", "multiprocess"), ("in_process", "in_process"),
    ("celery", "celery_executor"), ("k8s", "k8s"),
])
def test_definitions_load_with_each_executor(value, name, tmp_path, monkeypatch):
    if value is None:
        monkeypatch.delenv("ML_ASSETS_EXECUTOR", raising=False)
    else:
        monkeypatch.setenv("ML_ASSETS_EXECUTOR", value)
    monkeypatch.setenv("ML_ASSETS_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//")
    defs = build_definitions([flights_config()], storage=local_storage(tmp_path))
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("flights_pipeline").executor_def.name == name


def test_unknown_executor_is_named():
    with pytest.raises(ExecutorConfigError, match="ML_ASSETS_EXECUTOR must be one of") as info:
        executor_from_env({"ML_ASSETS_EXECUTOR": "spark"})
    assert "'spark'" in str(info.value)


def test_celery_without_a_broker_is_named():
    with pytest.raises(ExecutorConfigError, match="needs ML_ASSETS_CELERY_BROKER"):
        executor_from_env({"ML_ASSETS_EXECUTOR": "celery"})


# ---------------------------------------------------------------- backfill policy from config
def test_backfill_chunks_from_config():
    default = build_pipeline(flights_config())
    chunked = build_pipeline(flights_config(backfill={"max_partitions_per_run": 7}))
    assert {str(a.backfill_policy) for a in default.assets if a.backfill_policy} == {
        str(dg.BackfillPolicy.single_run())}
    policies = [a.backfill_policy for a in chunked.assets if a.partitions_def is not None]
    assert policies and all(p.max_partitions_per_run == 7 for p in policies)


@pytest.mark.parametrize("bad", [0, -3, "seven"])
def test_bad_max_partitions_per_run_is_named(bad, tmp_path):
    path = write_config(tmp_path / "x.yaml", flights_dict(backfill={"max_partitions_per_run": bad}))
    with pytest.raises(ConfigError, match="backfill.max_partitions_per_run"):
        load_config(path)
