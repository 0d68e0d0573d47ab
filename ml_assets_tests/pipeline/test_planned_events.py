"""One planned event per asset and run (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS), and
failed partitions named by ml_assets since Dagster then does not mark them failed."""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg
import pandas as pd
import pytest

from ml_assets import cli
from ml_assets.environment import (
    EMIT_PARTITION_SUBSET,
    EVENT_BATCH_SIZE,
    EnvironmentError_,
    dagster_event_settings,
)
from ml_assets.failed_partitions import TAG_FAILED_PARTITIONS, compress
from ml_assets.runner import render, run_pipeline
from ml_assets_tests.helpers import flights_config, flights_dict, write_config

START, END, AS_OF = dt.date(2013, 1, 1), dt.date(2013, 1, 15), dt.date(2013, 1, 12)
BREAK_VARIABLE = "ML_ASSETS_TEST_BREAK_DAY"


def break_on_day(frame: pd.DataFrame) -> pd.DataFrame:
    """A transform that raises on the day named by $ML_ASSETS_TEST_BREAK_DAY (if any)."""
    day = os.environ.get(BREAK_VARIABLE)
    if day and len(frame) and str(frame["scheduled_departure"].iloc[0])[:10] == day:
        raise ValueError(f"broken transform on {day}")
    return frame


@pytest.fixture
def event_env(monkeypatch):
    """Neither variable set, as on a user's machine; whatever run_pipeline sets is undone."""
    for name in (EMIT_PARTITION_SUBSET, EVENT_BATCH_SIZE, "ENV"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)


def _transforms() -> list[str]:
    base = flights_dict()["features"]["transforms"]
    return [*base, "ml_assets_tests.pipeline.test_planned_events:break_on_day"]


def _planned(instance, run_id) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        key = entry.dagster_event.asset_key.to_user_string()
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow
def test_failed_range_is_named_tagged_and_a_retry_materializes_it(
        event_env, instance, storage, monkeypatch):
    cfg = flights_config(features={"transforms": _transforms()})
    monkeypatch.setenv(BREAK_VARIABLE, "2013-01-05")
    failed = run_pipeline(cfg, START, END, AS_OF, instance, storage=storage)

    # one planned event per asset, not one per asset and day (9 assets x 14 days)
    assert os.environ[EMIT_PARTITION_SUBSET] == "true"
    assert set(_planned(instance, failed["run_id"]).values()) == {1}
    assert failed["success"] is False
    assert "broken transform on 2013-01-05" in failed["step_failures"][0]["error"]
    report = failed["failed_partitions"]
    # raw/processed/quarantine were written; the features step failed, so nothing downstream
    assert sorted(report["by_asset"]) == ["flights/drift", "flights/features",
                                          "flights/model_performance", "flights/predictions"]
    assert report["ranges"] == "2013-01-01..2013-01-14"
    assert report["retry"] == {"start": "2013-01-01", "end": "2013-01-15"}
    assert len(report["days"]) == 14
    run = instance.get_run_by_id(failed["run_id"])
    assert run.tags[TAG_FAILED_PARTITIONS] == "2013-01-01..2013-01-14"
    text = render(failed)
    assert "not materialized: 14 day(s) 2013-01-01..2013-01-14" in text
    assert "--start 2013-01-01 --end 2013-01-15" in text
    # Dagster does not know these partitions failed (the price of the setting) ...
    features = dg.AssetKey(["flights", "features"])
    assert instance.get_materialized_partitions(features) == set()

    # ... and a retry of the named range, with the transform fixed, materializes every day
    monkeypatch.delenv(BREAK_VARIABLE)
    retry = report["retry"]
    fixed = run_pipeline(cfg, dt.date.fromisoformat(retry["start"]),
                         dt.date.fromisoformat(retry["end"]), AS_OF, instance, storage=storage)
    assert fixed["success"] is True, fixed["step_failures"] or fixed["failed_checks"]
    assert fixed["failed_partitions"] == {}
    assert TAG_FAILED_PARTITIONS not in instance.get_run_by_id(fixed["run_id"]).tags
    assert len(instance.get_materialized_partitions(features)) == 14
    assert fixed["partitions"]["predictions"] == 14


@pytest.mark.slow
def test_cli_json_names_failed_partitions_of_a_blocking_gate(event_env, cli_env, tmp_path,
                                                             capsys):
    """A failed blocking gate: no predictions; `--json` and the run's tag name the days."""
    config = write_config(tmp_path / "flights.yaml", flights_dict(gates={"roc_auc": {"min": 0.99}}))
    code = cli.main(["run", "--config", str(config), "--start", "2013-01-01", "--end",
                     "2013-01-15", "--as-of", "2013-01-12", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["success"] is False
    report = summary["failed_partitions"]
    assert "flights/predictions" in report["by_asset"]
    assert "flights/features" not in report["by_asset"]  # what was written is not listed
    assert report["by_asset"]["flights/predictions"] == "2013-01-01..2013-01-14"
    with dg.DagsterInstance.get() as inst:
        assert inst.get_run_by_id(summary["run_id"]).tags[TAG_FAILED_PARTITIONS] == report["ranges"]


def test_compress_days_into_ranges():
    assert compress(["2024-03-05", "2024-03-01", "2024-03-02", "2024-03-03"]) == \
        "2024-03-01..2024-03-03, 2024-03-05"
    assert compress(["2024-02-28", "2024-02-29", "2024-03-01"]) == "2024-02-28..2024-03-01"
    assert compress([]) == ""


def test_event_settings_defaults_and_explicit_values():
    assert dagster_event_settings({}) == {EMIT_PARTITION_SUBSET: "true"}
    # the PostgreSQL instance (staging, production) also batches event writes
    assert dagster_event_settings({"ENV": "staging"}) == {EMIT_PARTITION_SUBSET: "true",
                                                          EVENT_BATCH_SIZE: "50"}
    # what the environment sets wins, including turning the setting off
    assert dagster_event_settings({EMIT_PARTITION_SUBSET: "false", EVENT_BATCH_SIZE: "0"}) == {
        EMIT_PARTITION_SUBSET: "false", EVENT_BATCH_SIZE: "0"}


@pytest.mark.parametrize(("name", "value", "message"), [
    (EMIT_PARTITION_SUBSET, "maybe", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS must be "
                                     "true or false, found 'maybe'"),
    (EVENT_BATCH_SIZE, "fifty", "DAGSTER_EVENT_BATCH_SIZE must be a whole number of events in "
                                "0..10000 (0: no batching), found 'fifty'"),
    (EVENT_BATCH_SIZE, "-5", "found '-5'"),
])
def test_bad_event_settings_are_rejected_naming_the_variable(name, value, message):
    with pytest.raises(EnvironmentError_) as err:
        dagster_event_settings({name: value})
    assert message in str(err.value)


def test_bad_event_setting_makes_the_cli_exit_2(event_env, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(EVENT_BATCH_SIZE, "lots")
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    code = cli.main(["run", "--config", str(config), "--start", "2013-01-01", "--end",
                     "2013-01-15", "--as-of", "2013-01-12"])
    assert code == 2
    assert "DAGSTER_EVENT_BATCH_SIZE must be a whole number" in capsys.readouterr().err


def test_column_schema_on_a_runs_last_partitions_keeps_the_schema_check_working(
        tmp_path, storage, instance, monkeypatch):
    """The schema is not repeated on every day of a backfill, and Dagster's schema-change check
    (latest two materializations) still finds it after a backfill and after a daily run."""
    from ml_assets.config import load_config
    from ml_assets.defs.io_manager import TableIOManager
    from ml_assets.defs.names import range_tags
    from ml_assets.defs.pipeline import build_pipeline
    from ml_assets_tests.helpers import rentals_dict, write_rentals

    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    write_rentals(tmp_path / "src", dt.date(2024, 3, 1), days=5, rows=20)
    cfg = load_config(write_config(tmp_path / "r.yaml",
                                   rentals_dict(str(tmp_path / "src" / "{date}.csv"))))
    built = build_pipeline(cfg)
    raw_key = built.names.raw
    schema_check = next(c for c in built.checks if raw_key in {k.asset_key for k in c.check_keys})
    resources = {"storage": storage, "table_io_manager": TableIOManager(storage=storage)}

    def run(first, last):
        result = dg.materialize([built.asset("raw"), schema_check], instance=instance,
                                resources=resources, tags=range_tags(first, last))
        [evaluation] = [e for e in result.get_asset_check_evaluations()
                        if e.asset_key == raw_key and "schema_change" in e.check_name]
        return result, evaluation

    backfill, evaluation = run("2024-03-01", "2024-03-04")
    assert evaluation.passed
    mats = {e.materialization.partition: e.materialization.metadata
            for e in backfill.get_asset_materialization_events()}
    assert [d for d, m in sorted(mats.items()) if "dagster/column_schema" in m] == [
        "2024-03-03", "2024-03-04"]
    assert mats["2024-03-04"]["partitions_in_run"].value == 4
    assert "partitions_in_run" not in mats["2024-03-01"]
    assert all("content_hash" in m and "dagster/row_count" in m for m in mats.values())
    daily, evaluation = run("2024-03-05", "2024-03-05")
    assert evaluation.passed, evaluation.description
    [mat] = [e.materialization.metadata for e in daily.get_asset_materialization_events()]
    assert "dagster/column_schema" in mat


def test_instance_init_checks_and_shows_the_event_settings(tmp_path, monkeypatch, capsys):
    from ml_assets.instance import main as instance_main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ENV", "staging")
    for name, value in PG_VARIABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(EVENT_BATCH_SIZE, "x")
    monkeypatch.delenv(EVENT_BATCH_SIZE)
    monkeypatch.setenv(EMIT_PARTITION_SUBSET, "x")
    monkeypatch.delenv(EMIT_PARTITION_SUBSET)
    assert instance_main(["init"]) == 0
    out = capsys.readouterr().out
    assert f"{EMIT_PARTITION_SUBSET}=true, {EVENT_BATCH_SIZE}=50" in out
    monkeypatch.setenv(EVENT_BATCH_SIZE, "1e3")
    assert instance_main(["init", "--force"]) == 2
    assert "DAGSTER_EVENT_BATCH_SIZE must be a whole number" in capsys.readouterr().err


PG_VARIABLES = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
                "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "x"}
