"""Monitoring as pure functions: drift levels, run verdicts, realized performance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml_assets.core.monitoring import (
    ERROR,
    OK,
    WARN,
    day_drift,
    drift_verdicts,
    labelled_predictions,
    performance_level,
    performance_verdict,
    realized_performance,
    share_level,
)
from ml_assets_tests.core._helpers import config, synthetic_days


@pytest.mark.parametrize("share,level", [(0.0, OK), (0.29, OK), (0.3, WARN), (0.49, WARN),
                                         (0.5, ERROR), (1.0, ERROR)])
def test_share_level(share, level):
    assert share_level(share, 0.3, 0.5) == level


@pytest.fixture
def cfg():
    return config(drift={"warn_share": 0.3, "error_share": 0.6, "prediction_level": "error"},
                  monitoring={"performance_tolerance": "10%", "window_days": 3, "min_rows": 50})


@pytest.fixture
def days():
    return synthetic_days(n_days=8, rows=400, seed=3)


def test_no_drift_on_the_same_distribution_and_error_on_a_shift(cfg, days):
    reference = pd.concat([days[d] for d in list(days)[:5]], ignore_index=True)
    same = day_drift("2024-01-06", reference, days["2024-01-06"], cfg, None, None)
    assert same.level == OK and same.share == 0.0
    moved = days["2024-01-07"].copy()
    moved["x1"] += 3.0
    moved["x2"] *= 4.0
    moved["c"] = pd.array(["c"] * len(moved), dtype="string")
    shifted = day_drift("2024-01-07", reference, moved, cfg,
                        pd.Series(np.linspace(0, 1, 400)), pd.Series(np.full(400, 0.99)))
    assert shifted.feature_level == ERROR and shifted.drifted_columns == ["x1", "x2", "c"]
    assert shifted.prediction_level == ERROR  # prediction_level: error
    table = shifted.table()
    assert list(table["column"]) == ["x1", "x2", "c", "prediction"]
    assert table["drifted"].all() and (table["partition"] == "2024-01-07").all()
    feature, prediction = drift_verdicts([same, shifted], cfg)
    assert (feature.level, feature.error_days, feature.observed) == (ERROR, ["2024-01-07"], 1.0)
    assert feature.metadata()["first_error_day"] == "2024-01-07"
    assert feature.details["drifted_columns"] == "x1, x2, c"
    assert prediction.level == ERROR and not prediction.passed


def test_only_watched_columns_count_toward_the_share(days):
    cfg = config(drift={"columns": ["x2"], "warn_share": 0.5, "error_share": 1.0})
    reference = pd.concat([days[d] for d in list(days)[:5]], ignore_index=True)
    moved = days["2024-01-07"].copy()
    moved["x1"] += 3.0  # drifts, but is not watched
    result = day_drift("2024-01-07", reference, moved, cfg, None, None)
    assert result.features.by_column()["x1"].drifted
    assert result.share == 0.0 and result.level == OK


def test_a_feature_the_production_model_lacks_is_named_not_evaluated(cfg, days):
    """The config gained feature `x2` after production was trained: its reference rows lack it.
    The other features are still compared; x2 is listed as not evaluated, saying why."""
    reference = pd.concat([days[d] for d in list(days)[:5]], ignore_index=True).drop(columns=["x2"])
    moved = days["2024-01-07"].copy()
    moved["x1"] += 3.0
    result = day_drift("2024-01-07", reference, moved, cfg, None, None)
    by = result.features.by_column()
    assert by["x1"].drifted and by["c"].evaluated
    assert not by["x2"].evaluated and "added to the config after it was trained" in by["x2"].note
    assert result.share == 0.5  # x1 of the two evaluated features
    assert list(result.table()["column"]) == ["x1", "c", "x2"]


def test_an_empty_day_is_not_drift(cfg, days):
    reference = pd.concat(list(days.values()), ignore_index=True)
    result = day_drift("2024-01-09", reference, days["2024-01-08"].iloc[0:0], cfg, None, None)
    assert result.level == OK and result.rows == 0


def _labelled(day, n, seed, model_id="m1", noise=0.0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n).astype(float)
    prediction = np.clip(label * 0.6 + 0.2 + rng.normal(0, 0.15 + noise, n), 0, 1)
    return pd.DataFrame({"day": pd.Series(day, index=range(n), dtype="string"),
                         "model_id": pd.Series(model_id, index=range(n), dtype="string"),
                         "label": label, "prediction": prediction})


SIDECAR = {"m1": {"version": "v1.0.0", "train_days": ["2024-01-01", "2024-01-02"],
                  "validation_days": ["2024-01-03"], "metrics": {"roc_auc": 0.95}}}


def test_realized_performance_judges_only_days_the_model_could_serve(cfg):
    rows = pd.concat([_labelled("2024-01-03", 200, 1), _labelled("2024-01-04", 200, 2),
                      _labelled("2024-01-05", 200, 3)], ignore_index=True)
    table = realized_performance("2024-01-05", rows, SIDECAR, cfg)
    [row] = table.to_dict("records")
    assert row["rows"] == 400  # 2024-01-03 is in the training window: left out
    assert row["judged"] and row["window"] == "2024-01-03..2024-01-05"
    assert math.isclose(row["tolerance"], 0.095)  # 10% of the validation value
    assert performance_level(table) == (ERROR if row["drop"] > 0.095 else OK)
    # a day before the window (a backfill re-score) is never judged for that model
    before = realized_performance("2024-01-01", _labelled("2023-12-31", 300, 4), SIDECAR, cfg)
    assert not before["judged"].any() and "after the model's training window" in before["note"][0]


def test_a_worse_model_is_an_error_and_few_rows_are_not_judged(cfg):
    bad = realized_performance("2024-01-06", _labelled("2024-01-06", 300, 5, noise=0.6), SIDECAR, cfg)
    assert bad["judged"].all() and performance_level(bad) == ERROR
    verdict = performance_verdict({"2024-01-06": bad}, cfg)
    assert verdict.level == ERROR and verdict.error_days == ["2024-01-06"]
    assert "v1.0.0 roc_auc realized" in verdict.details["worst"]
    few = realized_performance("2024-01-06", _labelled("2024-01-06", 20, 6), SIDECAR, cfg)
    assert not few["judged"].any() and "monitoring.min_rows=50" in few["note"][0]
    assert performance_verdict({"2024-01-06": few}, cfg).level == OK


def test_labelled_predictions_refuse_misaligned_rows(cfg, days):
    feats = days["2024-01-02"]
    preds = pd.DataFrame({"id": feats["id"], "prediction": 0.5, "model_id": "m1"})
    out = labelled_predictions("2024-01-02", feats, preds, cfg)
    assert len(out) == len(feats) and (out["label"] == feats["_label"]).all()
    with pytest.raises(ValueError, match="predictions for 400 feature rows"):
        labelled_predictions("2024-01-02", feats, preds.iloc[:-1], cfg)
    with pytest.raises(ValueError, match="not in the order of the feature rows"):
        labelled_predictions("2024-01-02", feats, preds.iloc[::-1].reset_index(drop=True), cfg)


@pytest.mark.parametrize("over,message", [
    ({"monitoring": {"performance_tolerance": "ten percent"}}, "percentage like '10%'"),
    ({"monitoring": {"performance_tolerance": -1}}, "must be >= 0"),
    ({"monitoring": {"performance_tolerance": {"f1": 0.1}}}, "monitoring.performance_tolerance.f1"),
    ({"monitoring": {"window_days": 0}}, "monitoring.window_days"),
    ({"drift": {"warn_share": 0.8, "error_share": 0.5}}, "warn_share (0.8) is above error_share"),
    ({"drift": {"numeric_method": "euclid"}}, "drift.numeric_method"),
    ({"drift": {"categorical_method": "wasserstein"}}, "drift.categorical_method"),
    ({"drift": {"columns": ["nope"]}}, "drift.columns.0"),
    ({"drift": {"prediction_threshold": 0}}, "drift.prediction_threshold"),
    ({"drift": {"report": "sometimes"}}, "drift.report"),
    ({"automation": {"daily_cron": "every day"}}, "is not a cron expression"),
    ({"automation": {"retrain_cron": "0 25 * * *"}}, "hour field '25' is outside 0..23"),
    ({"automation": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ({"automation": {"sensor_interval_seconds": 1}}, "automation.sensor_interval_seconds"),
    ({"automation": {"cooldown_seconds": -5}}, "automation.cooldown_seconds"),
])
def test_bad_monitoring_and_automation_config(tmp_path, over, message):
    from ml_assets.config import ConfigError, load_config
    from ml_assets_tests.helpers import flights_dict, write_config

    path = write_config(tmp_path / "bad.yaml", flights_dict(**over))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)
