"""Schema changes between materializations are reported by Dagster's schema-change checks."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

from ml_assets.config import load_config
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.pipeline import build_pipeline
from ml_assets_tests.helpers import rentals_dict, write_config, write_rentals


def test_added_source_column_is_reported(tmp_path, storage, instance, monkeypatch):
    """With `extra_columns: keep` a new source column reaches raw and Dagster's schema-change
    check reports it; with the default (`drop`) it never reaches storage and raw's metadata
    names it."""
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    [first, second] = write_rentals(src, dt.date(2024, 3, 1), days=2, rows=20)
    frame = pd.read_csv(second, dtype=str)
    frame["bike_model"] = "e-bike"
    frame.to_csv(second, index=False)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"),
                                                                      extra_columns="keep")))
    built = build_pipeline(cfg)
    raw_key = built.names.raw
    schema_check = next(c for c in built.checks if raw_key in {k.asset_key for k in c.check_keys})
    resources = {"storage": storage, "table_io_manager": TableIOManager(storage=storage)}

    def run(day):
        return dg.materialize([built.asset("raw"), schema_check], instance=instance,
                              resources=resources, partition_key=day, raise_on_error=False)

    run("2024-03-01")
    result = run("2024-03-02")
    [evaluation] = [e for e in result.get_asset_check_evaluations()
                    if e.asset_key == raw_key and "schema_change" in e.check_name]
    assert not evaluation.passed
    assert "bike_model" in str(evaluation.metadata) or "bike_model" in str(evaluation.description)
    # the CLI's summary shows what Dagster's check says, not "observed None, threshold None"
    from ml_assets.runner import render, summarize

    day = dt.date(2024, 3, 2)
    text = render(summarize(cfg, result, day, day + dt.timedelta(days=1), day, {}))
    [line] = [ln for ln in text.splitlines() if "schema_change" in ln]
    assert "bike_model" in line and "observed None" not in line, line


def test_added_source_column_is_dropped_and_named_by_default(tmp_path, storage, instance,
                                                             monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    [_, second] = write_rentals(src, dt.date(2024, 3, 1), days=2, rows=20)
    frame = pd.read_csv(second, dtype=str)
    frame["bike_model"] = "e-bike"
    frame.to_csv(second, index=False)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    built = build_pipeline(cfg)
    resources = {"storage": storage, "table_io_manager": TableIOManager(storage=storage)}
    result = dg.materialize([built.asset("raw")], instance=instance, resources=resources,
                            partition_key="2024-03-02", raise_on_error=False)
    assert result.success
    [mat] = [e.materialization for e in result.get_asset_materialization_events()]
    assert mat.metadata["extra_columns"].value == "bike_model"
    assert "bike_model" not in pd.read_parquet(mat.metadata["dagster/uri"].value).columns


def test_rows_placed_outside_their_day_do_not_change_raws_schema(tmp_path, storage, instance,
                                                                 monkeypatch):
    """A day with a row outside its file's day carries the platform's `_ingest_reason`; a clean
    day after it has the same column (null), so Dagster's schema-change check stays quiet."""
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    [first, _] = write_rentals(src, dt.date(2024, 3, 1), days=2, rows=20)
    frame = pd.read_csv(first, dtype=str)
    frame.loc[0, "started_at"] = "2024-03-07 10:00:00"  # not the file's day
    frame.to_csv(first, index=False)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    built = build_pipeline(cfg)
    raw_key = built.names.raw
    schema_check = next(c for c in built.checks if raw_key in {k.asset_key for k in c.check_keys})
    resources = {"storage": storage, "table_io_manager": TableIOManager(storage=storage)}
    results = [dg.materialize([built.asset("raw"), schema_check], instance=instance,
                              resources=resources, partition_key=day, raise_on_error=False)
               for day in ("2024-03-01", "2024-03-02")]
    [placed] = [e.materialization for e in results[0].get_asset_materialization_events()]
    stored = pd.read_parquet(placed.metadata["dagster/uri"].value)
    assert stored["_ingest_reason"].notna().sum() == 1
    [evaluation] = [e for e in results[1].get_asset_check_evaluations()
                    if e.asset_key == raw_key and "schema_change" in e.check_name]
    assert evaluation.passed, evaluation.description
