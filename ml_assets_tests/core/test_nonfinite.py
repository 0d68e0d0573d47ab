"""Non-finite numbers (inf, -inf, NaN) are quarantined unless a float64 column allows them."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_assets.config import ConfigError, PipelineConfig, load_config
from ml_assets.core.contract import clean
from ml_assets.core.sources import read_source
from ml_assets_tests.core._helpers import config, raw_frame

PART = "2024-01-05"
SCHEMA = config().model_dump(by_alias=True)["schema"]
TEXT_FORMS = ["inf", "Infinity", "-inf", "-Infinity", "+inf", "INF", "1e309", "-1e309", "nan",
              "NaN", "-nan"]


def cfg_with(**x1) -> PipelineConfig:
    return config(schema={**SCHEMA, "x1": {"dtype": "float64", **x1}})


def text_rows(x1: list) -> pd.DataFrame:
    n = len(x1)
    return raw_frame("in.csv", id=[str(i + 1) for i in range(n)], x1=x1, x2=["0"] * n,
                     c=["a"] * n, y=["1"] * n)


@pytest.mark.parametrize("value", TEXT_FORMS)
def test_nonfinite_text_in_float_column_is_quarantined_naming_column_value_expected(value):
    result = clean(text_rows(["1.5", value]), cfg_with(), PART)
    assert result.processed["x1"].tolist() == [1.5]
    assert result.quarantine["reason"].tolist() == [
        f"column 'x1': expected finite float64, found {value!r}"]
    assert result.quarantine["_source_row"].tolist() == [2]


@pytest.mark.parametrize("value", ["inf", "Infinity", "-inf", "1e309", "nan", "NaN"])
def test_nonfinite_text_in_int_column_is_quarantined(value):
    raw = text_rows(["1"])
    raw["id"] = pd.Series([value], dtype=object)
    result = clean(raw, config(), PART)
    assert result.processed.empty
    assert result.quarantine["reason"].tolist() == [f"column 'id': expected int64, found {value!r}"]


@pytest.mark.parametrize("value,expected", [("inf", math.inf), ("Infinity", math.inf),
                                            ("-inf", -math.inf), ("1e309", math.inf),
                                            ("-1e309", -math.inf)])
def test_allow_nonfinite_lets_infinities_through(value, expected):
    result = clean(text_rows([value, "2"]), cfg_with(allow_nonfinite=True), PART)
    assert result.quarantine.empty
    assert result.processed["x1"].tolist() == [expected, 2.0]


@pytest.mark.parametrize("value", ["nan", "NaN", "-nan"])
def test_allowed_nan_text_becomes_a_null_and_nullability_still_applies(value):
    nullable = clean(text_rows([value]), cfg_with(allow_nonfinite=True), PART)
    assert nullable.quarantine.empty and pd.isna(nullable.processed["x1"].iloc[0])
    required = clean(text_rows([value]), cfg_with(allow_nonfinite=True, nullable=False), PART)
    assert required.quarantine["reason"].tolist() == ["column 'x1': null not allowed"]


def test_allowed_infinity_is_still_bounded_by_min_and_max():
    result = clean(text_rows(["inf", "-inf"]), cfg_with(allow_nonfinite=True, min=0, max=10), PART)
    assert result.quarantine["reason"].tolist() == ["column 'x1': inf above max 10",
                                                    "column 'x1': -inf below min 0"]


def test_text_that_is_not_a_number_keeps_the_plain_reason():
    result = clean(text_rows(["infinite", "nanny"]), cfg_with(allow_nonfinite=True), PART)
    assert result.quarantine["reason"].tolist() == ["column 'x1': expected float64, found 'infinite'",
                                                    "column 'x1': expected float64, found 'nanny'"]


def test_float_column_holding_inf_is_quarantined_and_allowed_by_the_key():
    """A typed (Parquet-like) float64 column: the value is inf itself, not text."""
    raw = text_rows(["1", "1", "1"])
    raw["x1"] = np.array([0.5, np.inf, -np.inf])
    result = clean(raw, cfg_with(), PART)
    assert result.processed["x1"].tolist() == [0.5]
    assert result.quarantine["reason"].tolist() == [
        "column 'x1': expected finite float64, found inf",
        "column 'x1': expected finite float64, found -inf"]
    allowed = clean(raw, cfg_with(allow_nonfinite=True), PART)
    assert allowed.quarantine.empty
    assert allowed.processed["x1"].tolist() == [0.5, math.inf, -math.inf]


# ---------------------------------------------------------------- real files, read by the source
def _files_cfg(tmp_path, fmt: str, **x1) -> PipelineConfig:
    return config(
        source={"kind": "files", "uri": str(tmp_path / f"{{date}}.{fmt}"), "format": fmt,
                "timestamp_column": "ts"},
        schema={**SCHEMA, "ts": {"dtype": "datetime"}, "x1": {"dtype": "float64", **x1}})


def _clean_file(cfg: PipelineConfig) -> pd.DataFrame:
    batch = read_source(cfg, dt.date(2024, 1, 5), dt.date(2024, 1, 6))
    return clean(batch.frames[PART], cfg, PART)


def test_csv_file_with_nonfinite_text_is_quarantined_row_by_row(tmp_path):
    lines = ["id,ts,x1,x2,c,y"] + [f"{i},2024-01-05 10:00,{v},0,a,1"
                                   for i, v in enumerate(["1.5", "inf", "Infinity", "1e309",
                                                          "NaN", "-inf"], start=1)]
    (tmp_path / f"{PART}.csv").write_text("\n".join(lines) + "\n")
    result = _clean_file(_files_cfg(tmp_path, "csv"))
    assert result.processed["x1"].tolist() == [1.5]
    assert [r.split(", found ")[1] for r in result.quarantine["reason"]] == [
        "'inf'", "'Infinity'", "'1e309'", "'NaN'", "'-inf'"]
    assert all(r.startswith("column 'x1': expected finite float64") for r in result.quarantine["reason"])
    assert result.quarantine["_source_file"].str.endswith(f"{PART}.csv").all()
    allowed = _clean_file(_files_cfg(tmp_path, "csv", allow_nonfinite=True))
    assert allowed.quarantine.empty and len(allowed.processed) == 6


def test_parquet_float_column_holding_inf_is_quarantined(tmp_path):
    pd.DataFrame({"id": [1, 2, 3], "ts": pd.to_datetime(["2024-01-05 10:00"] * 3),
                  "x1": [1.0, np.inf, -np.inf], "x2": [0.0] * 3, "c": ["a"] * 3, "y": [1, 0, 1]}
                 ).to_parquet(tmp_path / f"{PART}.parquet")
    result = _clean_file(_files_cfg(tmp_path, "parquet"))
    assert result.processed["id"].tolist() == [1]
    assert result.quarantine["reason"].tolist() == [
        "column 'x1': expected finite float64, found inf",
        "column 'x1': expected finite float64, found -inf"]
    allowed = _clean_file(_files_cfg(tmp_path, "parquet", allow_nonfinite=True))
    assert allowed.quarantine.empty
    assert allowed.processed["x1"].tolist() == [1.0, math.inf, -math.inf]


def test_parquet_float_nan_is_rejected_like_nan_text_but_a_null_is_a_null(tmp_path):
    """pandas reads a Parquet NaN and a null alike; the source tells them apart, so a NaN value
    is quarantined as a CSV file's `NaN` text is, and a null is only a null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "id": [1, 2, 3], "ts": pa.array([dt.datetime(2024, 1, 5, 10)] * 3, pa.timestamp("us")),
        "x1": pa.array([1.5, float("nan"), None], pa.float64()), "x2": [0.0] * 3,
        "c": ["a"] * 3, "y": [1, 0, 1]}), tmp_path / f"{PART}.parquet")
    result = _clean_file(_files_cfg(tmp_path, "parquet", nullable=True))
    assert result.processed["id"].tolist() == [1, 3]
    assert result.processed["x1"].iloc[0] == 1.5 and pd.isna(result.processed["x1"].iloc[1])
    assert result.quarantine["reason"].tolist() == ["column 'x1': expected finite float64, found 'NaN'"]
    allowed = _clean_file(_files_cfg(tmp_path, "parquet", nullable=True, allow_nonfinite=True))
    assert allowed.quarantine.empty and allowed.processed["id"].tolist() == [1, 2, 3]
    strict = _clean_file(_files_cfg(tmp_path, "parquet", nullable=False, allow_nonfinite=True))
    assert strict.processed["id"].tolist() == [1]  # allowed NaN is a null: nullable applies


# ---------------------------------------------------------------- the config key: bad input
@pytest.mark.parametrize("spec,reason", [
    ({"dtype": "float64", "allow_nonfinite": "sometimes"}, "valid boolean"),
    ({"dtype": "float64", "allow_nonfinite": "true"}, "valid boolean"),
    ({"dtype": "float64", "allow_nonfinite": 1}, "valid boolean"),
    ({"dtype": "int64", "allow_nonfinite": True},
     "allow_nonfinite applies to float64 columns only, not int64 (an int64 column cannot hold"),
    ({"dtype": "string", "allow_nonfinite": True},
     "allow_nonfinite applies to float64 columns only, not string"),
], ids=["text", "quoted_true", "number", "int64_column", "string_column"])
def test_bad_allow_nonfinite_names_file_key_and_reason(tmp_path, spec, reason):
    data = config().model_dump(by_alias=True, mode="json")
    data["schema"]["x1"] = spec
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "schema.x1" in message
    assert reason in message


def test_allow_nonfinite_defaults_to_off():
    assert cfg_with().columns["x1"].allow_nonfinite is False
