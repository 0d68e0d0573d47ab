"""A second dataset of a different shape runs through config alone: regression from CSV files,
PII hashed and dropped, rows split into days from one file or read one file per day."""

from __future__ import annotations

import datetime as dt
import glob

import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets_tests.helpers import (
    error_checks,
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("per_day", [True, False], ids=["file-per-day", "one-file-many-days"])
def test_rentals_regression_through_config_alone(tmp_path, storage, instance, monkeypatch, per_day):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "test-key")
    src = tmp_path / "src"
    write_rentals(src, dt.date(2024, 3, 1), days=12, rows=300, per_day=per_day)
    uri = str(src / "{date}.csv") if per_day else str(src / "*.csv")
    cfg = load_config(write_config(tmp_path / "rentals.yaml", rentals_dict(uri)))

    result = materialize(cfg, storage, instance, "2024-03-01", "2024-03-12", as_of="2024-03-10")
    assert result.success, step_errors(result)
    assert error_checks(result) == []

    raw = materializations(result, "raw")
    assert len(raw) == 12
    frame = pd.read_parquet(raw["2024-03-04"].metadata["dagster/uri"].value)
    assert len(frame) == 300
    # PII treated before anything is written: no e-mail or phone number in any stored file
    assert "phone" not in frame.columns
    assert frame["rider_email"].str.fullmatch(r"[0-9a-f]{32}").all()
    for path in glob.glob(str(storage.tables_root) + "/**/*.parquet", recursive=True):
        stored = pd.read_parquet(path)
        for column in stored.columns:
            text = stored[column].astype(str)
            assert not text.str.contains("@example.com").any(), (path, column)
            assert not text.str.contains(r"\+1555").any(), (path, column)

    model = materializations(result, "model")[None].metadata
    assert {"metric_rmse", "metric_mae", "metric_r2"} <= set(model)
    assert model["metric_rmse"].value < 4.0 and model["metric_r2"].value > 0.5
    preds = pd.read_parquet(materializations(result, "predictions")["2024-03-12"]
                            .metadata["dagster/uri"].value)
    assert len(preds) == 300 and "predicted_class" not in preds.columns
    assert preds["prediction"].notna().all()
    assert list(preds.columns[:1]) == ["rental_id"]


def test_missing_pii_key_fails_before_anything_is_written(tmp_path, storage, instance, monkeypatch):
    monkeypatch.delenv("ML_ASSETS_PII_KEY", raising=False)
    src = tmp_path / "src"
    write_rentals(src, dt.date(2024, 3, 1), days=1)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    result = materialize(cfg, storage, instance, "2024-03-01", layers=["raw"])
    assert not result.success
    assert "rider_email" in step_errors(result) and "HMAC key" in step_errors(result)
    assert glob.glob(str(storage.tables_root) + "/**/*.parquet", recursive=True) == []
