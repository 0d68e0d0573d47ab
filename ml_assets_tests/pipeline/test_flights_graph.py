"""The flights graph end to end through real Dagster execution on a temporary instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_assets.core.tables import content_hash
from ml_assets_tests.helpers import (
    checks_by_name,
    failed_checks,
    flights_config,
    materializations,
    materialize,
    step_errors,
)

pytestmark = pytest.mark.slow


def test_graph_end_to_end_writes_every_layer_with_versions(storage, instance):
    cfg = flights_config()
    result = materialize(cfg, storage, instance, "2013-01-01", "2013-01-14", as_of="2013-01-12")
    assert result.success, step_errors(result)
    # clean January data: no blocking check fails; holiday days may warn on prediction drift
    assert set(failed_checks(result)) <= {"processed.quarantine_rate", "drift.prediction_drift"}
    monitoring = {n: e for n, e in checks_by_name(result).items()
                  if n.startswith(("drift.", "model_performance."))}
    assert sorted(monitoring) == ["drift.feature_drift", "drift.prediction_drift",
                                  "model_performance.model_performance"]
    for evaluation in monitoring.values():  # the level is explicit where automation reads it
        assert evaluation.metadata["level"].value in ("OK", "WARN")
    assert monitoring["drift.feature_drift"].metadata["level"].value == "OK"

    raw = materializations(result, "raw")
    feats = materializations(result, "features")
    preds = materializations(result, "predictions")
    assert sorted(raw) == [f"2013-01-{d:02d}" for d in range(1, 15)]
    assert sorted(preds) == sorted(raw)

    # every partition records URI, row count and its own content hash; the file at the URI has
    # exactly that content. The column schema is on the run's last two partitions (what the
    # schema-change check compares), not repeated on every day of an unchanged schema.
    for partition, mat in feats.items():
        uri = mat.metadata["dagster/uri"].value
        frame = pd.read_parquet(uri)
        assert len(frame) == mat.metadata["dagster/row_count"].value
        assert content_hash(frame) == mat.metadata["content_hash"].value
        assert ("dagster/column_schema" in mat.metadata) == (partition >= "2013-01-13")
        pred = pd.read_parquet(preds[partition].metadata["dagster/uri"].value)
        assert len(pred) == len(frame)  # one prediction per feature row
        assert pred["prediction"].between(0, 1).all()
    assert feats["2013-01-14"].metadata["partitions_in_run"].value == 14

    model = materializations(result, "model")[None]
    model_id = model.metadata["model_id"].value
    assert model.metadata["gate_passed"].value is True
    for name in ("metric_roc_auc", "metric_accuracy", "metric_f1", "metric_log_loss"):
        assert isinstance(model.metadata[name].value, float)
    assert model.metadata["as_of"].value == "2013-01-12"
    assert model.metadata["train_days"].value == "2013-01-03..2013-01-09"
    assert model.metadata["validation_days"].value == "2013-01-10..2013-01-12"
    lineage = model.metadata["feature_partitions"].value
    assert sorted(lineage) == [f"2013-01-{d:02d}" for d in range(3, 13)]
    assert lineage["2013-01-05"]["content_hash"] == feats["2013-01-05"].metadata["content_hash"].value
    assert lineage["2013-01-05"]["data_version"] == feats["2013-01-05"].tags["dagster/data_version"]
    # the model is stored in LightGBM's text format with a JSON sidecar
    text = Path(model.metadata["model_uri"].value).read_text()
    assert text.startswith("tree\n")
    for mat in preds.values():
        assert mat.metadata["model_id"].value == model_id
        frame = pd.read_parquet(mat.metadata["dagster/uri"].value)
        assert set(frame["model_id"]) == {model_id}

    # label leakage: nothing known only after departure reaches features
    frame = pd.read_parquet(feats["2013-01-02"].metadata["dagster/uri"].value)
    assert not {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"} & set(frame.columns)


def test_training_is_deterministic_same_data_same_model_file(storage, instance, tmp_path):
    cfg = flights_config()
    first = materialize(cfg, storage, instance, "2013-01-01", "2013-01-12", as_of="2013-01-12",
                        layers=["raw", "processed", "quarantine", "features", "model"])
    assert first.success, step_errors(first)
    again = materialize(cfg, storage, instance, "2013-01-01", layers=["model"], as_of="2013-01-12")
    assert again.success, step_errors(again)
    a = materializations(first, "model")[None].metadata
    b = materializations(again, "model")[None].metadata
    assert a["model_id"].value == b["model_id"].value
    assert Path(a["model_uri"].value).read_bytes() == Path(b["model_uri"].value).read_bytes()


def test_reingesting_unchanged_day_keeps_data_version(storage, instance):
    cfg = flights_config()
    first = materialize(cfg, storage, instance, "2013-01-05", layers=["raw"])
    second = materialize(cfg, storage, instance, "2013-01-05", layers=["raw"])
    v1 = materializations(first, "raw")["2013-01-05"]
    v2 = materializations(second, "raw")["2013-01-05"]
    assert v1.tags["dagster/data_version"] == v2.tags["dagster/data_version"]
    assert v1.metadata["dagster/uri"].value == v2.metadata["dagster/uri"].value
    record = instance.get_latest_data_version_record(dg.AssetKey(["flights", "raw"]),
                                                     partition_key="2013-01-05")
    assert record is not None


def test_leaky_feature_is_blocked_and_model_refuses_it(storage, instance):
    cfg = flights_config(features={"numeric": ["distance", "sched_hour", "dep_delay"]},
                         drift={"columns": None})
    result = materialize(cfg, storage, instance, "2013-01-01", "2013-01-12", as_of="2013-01-12")
    assert not result.success
    assert "features.no_leakage" in failed_checks(result)
    # blocking: the model was not trained in this run
    assert materializations(result, "model") == {}
    # and in a later run the model asset itself refuses the leaky features
    later = materialize(cfg, storage, instance, "2013-01-01", layers=["model"], as_of="2013-01-12")
    assert not later.success
    assert "forbidden column(s) ['dep_delay']" in step_errors(later)


def test_single_run_backfill_is_one_run_for_many_partitions(storage, instance):
    cfg = flights_config()
    result = materialize(cfg, storage, instance, "2013-01-01", "2013-01-20",
                         layers=["raw", "processed", "quarantine", "features"])
    assert result.success, step_errors(result)
    assert len(instance.get_runs()) == 1
    assert len(materializations(result, "features")) == 20
    materialized = instance.get_materialized_partitions(dg.AssetKey(["flights", "features"]))
    assert len(materialized) == 20
