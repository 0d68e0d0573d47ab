"""Reproduction: `inf`, `Infinity` and `1e309` in a CSV reached predictions as +inf. Now they are
quarantined (a real Dagster run over real files), unless the column sets `allow_nonfinite`."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets_tests.helpers import (
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

DAY = "2024-03-02"
LAYERS = ["raw", "processed", "quarantine"]


@pytest.fixture
def src(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    folder = tmp_path / "src"
    write_rentals(folder, dt.date(2024, 3, 1), days=3, rows=50)
    path = folder / f"{DAY}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[1, "distance_km"] = "inf"
    frame.loc[2, "distance_km"] = "Infinity"
    frame.loc[3, "distance_km"] = "1e309"
    frame.loc[4, "temperature_c"] = "-inf"
    frame.loc[5, "temperature_c"] = "NaN"
    frame.to_csv(path, index=False)
    return folder


def _table(mat) -> pd.DataFrame:
    return pd.read_parquet(mat.metadata["dagster/uri"].value)


def test_nonfinite_csv_values_are_quarantined_not_passed_on(src, tmp_path, storage, instance):
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    result = materialize(cfg, storage, instance, DAY, layers=LAYERS)
    assert result.success, step_errors(result)
    q = _table(materializations(result, "quarantine")[DAY])
    assert q["_source_row"].tolist() == [2, 3, 4, 5, 6]
    assert q["reason"].tolist() == [
        "column 'distance_km': expected finite float64, found 'inf'",
        "column 'distance_km': expected finite float64, found 'Infinity'",
        "column 'distance_km': expected finite float64, found '1e309'",
        "column 'temperature_c': expected finite float64, found '-inf'",
        "column 'temperature_c': expected finite float64, found 'NaN'",
    ]
    processed = _table(materializations(result, "processed")[DAY])
    assert len(processed) == 45
    numbers = processed[["distance_km", "temperature_c", "duration_min"]].to_numpy(dtype="float64")
    assert not np.isinf(numbers).any()


def test_allow_nonfinite_lets_a_column_keep_them(src, tmp_path, storage, instance):
    data = rentals_dict(str(src / "{date}.csv"))
    data["schema"]["temperature_c"] = {"dtype": "float64", "allow_nonfinite": True}
    cfg = load_config(write_config(tmp_path / "r.yaml", data))
    result = materialize(cfg, storage, instance, DAY, layers=LAYERS)
    assert result.success, step_errors(result)
    q = _table(materializations(result, "quarantine")[DAY])
    assert q["_source_row"].tolist() == [2, 3, 4]  # distance_km still does not allow them
    processed = _table(materializations(result, "processed")[DAY]).set_index("_source_row")
    assert processed.loc[5, "temperature_c"] == -math.inf
    assert math.isnan(processed.loc[6, "temperature_c"])  # NaN text: a null
