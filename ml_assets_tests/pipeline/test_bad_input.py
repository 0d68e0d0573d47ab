"""Bad input gets a clear error and loses nothing; raw source files are never modified."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets_tests.helpers import (
    checks_by_name,
    failed_checks,
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

DAY = "2024-03-02"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def rentals(tmp_path, monkeypatch):
    """Three days of per-day CSV files and the pipeline config reading them."""
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    write_rentals(src, dt.date(2024, 3, 1), days=3, rows=50)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    return src, cfg


def _edit(src: Path, fn) -> None:
    path = src / f"{DAY}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(frame).to_csv(path, index=False)


def _rows(mat) -> int:
    return mat.metadata["dagster/row_count"].value


def test_missing_required_column(rentals, storage, instance):
    src, cfg = rentals
    _edit(src, lambda f: f.drop(columns=["distance_km"]))
    before = _digest(src)
    result = materialize(cfg, storage, instance, DAY, layers=["raw", "processed", "quarantine"])
    assert not result.success
    check = checks_by_name(result)["raw.required_columns"]
    assert not check.passed
    assert "distance_km" in check.metadata["observed"].value
    assert f"{DAY}.csv" in check.metadata["files"].value
    assert materializations(result, "processed") == {}  # blocked in the same run
    # nothing of the partition is written: no raw materialization, no Parquet file
    assert materializations(result, "raw") == {}
    assert not list(Path(storage.tables_root).rglob("*.parquet"))
    message = step_errors(result)
    assert f"partition {DAY}" in message and f"{DAY}.csv" in message
    assert "missing required column(s) ['distance_km']" in message
    assert "expected [" in message and "found [" in message
    # a later run of processed alone fails: there is no raw partition to read
    later = materialize(cfg, storage, instance, DAY, layers=["processed", "quarantine"])
    assert not later.success and "has no materialization for partition" in step_errors(later)
    assert _digest(src) == before


def test_unparseable_rows_are_quarantined_with_reasons(rentals, storage, instance):
    src, cfg = rentals

    def damage(f):
        f.loc[3, "distance_km"] = "twelve"
        f.loc[7, "temperature_c"] = "hot"
        f.loc[9, "started_at"] = "not a time"
        return f

    _edit(src, damage)
    before = _digest(src)
    result = materialize(cfg, storage, instance, DAY, layers=["raw", "processed", "quarantine"])
    assert result.success, step_errors(result)
    q = pd.read_parquet(materializations(result, "quarantine")[DAY].metadata["dagster/uri"].value)
    reasons = dict(zip(q["_source_row"], q["reason"], strict=False))
    assert reasons[4] == "column 'distance_km': expected float64, found 'twelve'"
    assert reasons[8] == "column 'temperature_c': expected float64, found 'hot'"
    assert reasons[10] == "column 'started_at': expected datetime, found 'not a time'"
    assert q["_source_file"].str.endswith(f"{DAY}.csv").all()
    processed = materializations(result, "processed")[DAY]
    assert _rows(processed) + len(q) == 50  # nothing lost
    assert processed.metadata["quarantined_rows"].value == 3
    assert _digest(src) == before


def test_column_of_wrong_type_quarantines_every_row_and_warns(rentals, storage, instance):
    src, cfg = rentals
    _edit(src, lambda f: f.assign(distance_km="n/a"))
    result = materialize(cfg, storage, instance, DAY, layers=["raw", "processed", "quarantine"])
    assert result.success, step_errors(result)
    assert _rows(materializations(result, "processed")[DAY]) == 0
    assert _rows(materializations(result, "quarantine")[DAY]) == 50
    check = checks_by_name(result)["processed.quarantine_rate"]
    assert not check.passed and check.metadata["observed"].value == 1.0
    assert DAY in check.metadata["failing_partitions"].value


def test_duplicate_rows_are_quarantined(rentals, storage, instance):
    src, cfg = rentals
    _edit(src, lambda f: pd.concat([f, f.iloc[[5]]], ignore_index=True))
    result = materialize(cfg, storage, instance, DAY, layers=["raw", "processed", "quarantine"])
    assert result.success, step_errors(result)
    q = pd.read_parquet(materializations(result, "quarantine")[DAY].metadata["dagster/uri"].value)
    assert len(q) == 1
    assert q.loc[0, "_source_row"] == 51
    assert "duplicate primary key ['rental_id']" in q.loc[0, "reason"] and "row 6" in q.loc[0, "reason"]
    assert checks_by_name(result)["processed.primary_key_unique"].passed


def test_empty_day_is_materialized_empty_and_flagged(rentals, storage, instance):
    src, cfg = rentals
    _edit(src, lambda f: f.iloc[0:0])
    result = materialize(cfg, storage, instance, DAY, layers=["raw", "processed", "quarantine",
                                                             "features"])
    assert result.success, step_errors(result)
    assert _rows(materializations(result, "raw")[DAY]) == 0
    assert _rows(materializations(result, "features")[DAY]) == 0
    check = checks_by_name(result)["raw.row_count"]
    assert not check.passed and DAY in check.metadata["failing_partitions"].value
    assert failed_checks(result) == ["raw.row_count"]


def test_day_without_source_file_fails_naming_it(rentals, storage, instance):
    src, cfg = rentals
    (src / f"{DAY}.csv").unlink()
    before = _digest(src)
    result = materialize(cfg, storage, instance, "2024-03-01", "2024-03-03", layers=["raw"])
    assert not result.success
    message = step_errors(result)
    assert f"partition {DAY}: no source file matches" in message and f"{DAY}.csv" in message
    assert _digest(src) == before


def test_changed_day_gets_new_version_and_old_version_stays_readable(rentals, storage, instance):
    src, cfg = rentals
    first = materialize(cfg, storage, instance, DAY, layers=["raw"])
    _edit(src, lambda f: f.assign(temperature_c="20.5"))
    second = materialize(cfg, storage, instance, DAY, layers=["raw"])
    old, new = materializations(first, "raw")[DAY], materializations(second, "raw")[DAY]
    assert old.tags["dagster/data_version"] != new.tags["dagster/data_version"]
    old_uri, new_uri = old.metadata["dagster/uri"].value, new.metadata["dagster/uri"].value
    assert old_uri != new_uri
    assert set(pd.read_parquet(new_uri)["temperature_c"]) == {"20.5"}
    assert "20.5" not in set(pd.read_parquet(old_uri)["temperature_c"])  # previous version intact
    # downstream reads exactly the newest recorded version
    processed = materialize(cfg, storage, instance, DAY, layers=["processed", "quarantine"])
    frame = pd.read_parquet(materializations(processed, "processed")[DAY].metadata["dagster/uri"].value)
    assert set(frame["temperature_c"]) == {20.5}


def test_unparseable_timestamp_in_multi_day_file_names_file_and_row(tmp_path, storage, instance,
                                                                    monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    [path] = write_rentals(src, dt.date(2024, 3, 1), days=2, rows=20, per_day=False)
    frame = pd.read_csv(path, dtype=str)
    frame.loc[4, "started_at"] = "yesterday"
    frame.to_csv(path, index=False)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "*.csv"))))
    result = materialize(cfg, storage, instance, "2024-03-01", "2024-03-02",
                         layers=["raw", "processed", "quarantine"])
    assert result.success, step_errors(result)
    # the row is not dropped: filed under the file's first day and quarantined, naming file and row
    q = pd.read_parquet(materializations(result, "quarantine")["2024-03-01"]
                        .metadata["dagster/uri"].value)
    [reason] = q.loc[q["_source_row"] == 5, "reason"].tolist()
    assert q.loc[q["_source_row"] == 5, "_source_file"].str.endswith("rentals.csv").all()
    assert "column 'started_at': expected a timestamp, found 'yesterday'" in reason
    assert "filed under 2024-03-01" in reason
    raw_rows = sum(_rows(m) for m in materializations(result, "raw").values())
    assert raw_rows == 40  # every row of the file, the bad one included
