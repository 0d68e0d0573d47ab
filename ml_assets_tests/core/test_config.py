from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ml_assets.config import ConfigError, FilesSource, PipelineConfig, load_config, load_configs

REPO = Path(__file__).resolve().parents[2]

VALID = {
    "name": "trips",
    "partitions": {"start": "2024-01-01", "end": "2024-03-01"},
    "source": {"kind": "files", "uri": "/data/trips/{date}.csv", "format": "csv",
               "timestamp_column": "ts"},
    "schema": {
        "ts": {"dtype": "datetime", "nullable": False},
        "trip_id": {"dtype": "int64", "nullable": False},
        "distance": {"dtype": "float64", "min": 0},
        "city": {"dtype": "string"},
        "email": {"dtype": "string"},
        "fare": {"dtype": "float64"},
    },
    "primary_key": ["trip_id"],
    "pii": {"email": "hash"},
    "target": {"column": "fare", "task": "regression"},
    "features": {"numeric": ["distance"], "categorical": ["city"]},
    "training": {"window_days": 14, "validation_days": 3, "params": {"seed": 1}},
    "gates": {"rmse": {"max": 10.0}},
}


def write(tmp_path: Path, data, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def mutated(fn) -> dict:
    data = copy.deepcopy(VALID)
    fn(data)
    return data


def test_shipped_flights_config_loads():
    cfg = load_config(REPO / "ml_assets" / "configs" / "flights.yaml")
    assert cfg.name == "flights"
    assert cfg.target.task == "binary"
    assert cfg.target.comparison() == (">", 15.0)
    assert "arr_delay" in cfg.features.forbidden
    assert cfg.timestamp_column == "scheduled_departure"
    assert set(cfg.gates) == {"roc_auc"}


def test_minimal_regression_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert isinstance(cfg, PipelineConfig)
    assert cfg.target.task == "regression"
    assert isinstance(cfg.source, FilesSource)
    assert cfg.timestamp_column == "ts"
    assert cfg.columns["trip_id"].dtype == "int64"
    assert cfg.feature_columns == ["distance", "city"]
    assert cfg.gates["rmse"].max == 10.0 and cfg.gates["rmse"].min is None
    # defaults
    assert cfg.checks.max_quarantine_rate == 0.05
    assert cfg.pii_key_env == "ML_ASSETS_PII_KEY"


def _set(path: str, value):
    def fn(data):
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[last] = value
    return fn


# (id, mutation, key path expected in the message, reason fragment expected in the message)
BAD = [
    ("unknown_top_level_key", _set("bogus", 1), "bogus", "unknown key"),
    ("unknown_nested_key", _set("training.epochs", 3), "training.epochs", "unknown key"),
    ("gate_min_gt_max", _set("gates.rmse", {"min": 5, "max": 1}), "gates.rmse",
     "min (5.0) is greater than max (1.0)"),
    ("gate_without_bounds", _set("gates.rmse", {}), "gates.rmse", "a gate needs min or max"),
    # cross-field checks are reported at the key path they concern
    ("gate_metric_wrong_task",
     lambda d: (d.update(target={"column": "fare", "task": "binary", "positive_when": "> 15"}),
                d.update(gates={"rmse": {"max": 1}})),
     "gates.rmse", "is not one of ['accuracy', 'f1', 'roc_auc', 'log_loss']"),
    ("dtype_not_allowed", _set("schema.city.dtype", "text"), "schema.city.dtype", "'string'"),
    ("positive_when_malformed",
     _set("target", {"column": "fare", "task": "binary", "positive_when": "greater 15"}),
     "target.positive_when", "found 'greater 15'"),
    ("binary_with_both_rules",
     _set("target", {"column": "fare", "task": "binary", "positive_when": "> 15",
                     "positive_value": "Yes"}),
     "target", "exactly one of positive_when or positive_value"),
    ("transform_not_importable", _set("features.transforms", ["no_such_pkg_xyz.mod:fn"]),
     "features.transforms", "cannot import module 'no_such_pkg_xyz.mod'"),
    ("transform_function_missing",
     _set("features.transforms", ["ml_assets.transforms.flights:no_such_fn"]),
     "features.transforms", "has no function 'no_such_fn'"),
    ("pii_hash_non_string", _set("pii", {"distance": "hash"}), "pii.distance",
     "its schema dtype must be string, not float64"),
    ("primary_key_not_in_schema", _set("primary_key", ["trip_id", "zz"]),
     "primary_key.1", "column 'zz' is not in schema"),
    ("validation_ge_window", _set("training.validation_days", 14), "training",
     "validation_days (14) must be less than window_days (14)"),
    ("partitions_end_le_start", _set("partitions.end", "2024-01-01"), "partitions",
     "must be after start"),
    ("name_uppercase", _set("name", "Trips"), "name", "found 'Trips'"),
    ("feature_not_in_schema_no_transforms", _set("features.numeric", ["distance", "humidity"]),
     "features.numeric.1", "'humidity' is not in schema and no features.transforms make it"),
    ("feature_hashed_by_pii", lambda d: d["features"]["categorical"].append("email"),
     "features.categorical.1", "'email' is PII (pii: hash): as a feature"),
    ("feature_masked_by_pii",
     lambda d: (d["schema"].update(phone={"dtype": "string"}), d["pii"].update(phone="mask"),
                d["features"]["categorical"].append("phone")),
     "features.categorical.1", "'phone' is PII (pii: mask)"),
    ("feature_dropped_by_pii",
     lambda d: (d["schema"].update(phone={"dtype": "string"}), d["pii"].update(phone="drop"),
                d["features"].update(categorical=["city", "phone"])),
     "features.categorical.1", "'phone' is dropped by pii"),
]


@pytest.mark.parametrize("mutate,key_path,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_file_key_and_reason(tmp_path, mutate, key_path, reason):
    path = write(tmp_path, mutated(mutate))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert key_path in msg
    assert reason in msg


@pytest.mark.parametrize("key_path", ["schema.city.dtype", "gates.rmse", "training.epochs"])
def test_located_errors_put_the_key_path_at_the_start_of_the_line(tmp_path, key_path):
    changes = {
        "schema.city.dtype": _set("schema.city.dtype", "text"),
        "gates.rmse": _set("gates.rmse", {}),
        "training.epochs": _set("training.epochs", 1),
    }
    path = write(tmp_path, mutated(changes[key_path]))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: invalid pipeline config"
    assert any(line.startswith(f"  {key_path}: ") for line in lines[1:]), lines


def test_gate_metric_error_reports_its_key_path(tmp_path):
    data = mutated(lambda d: (
        d.update(target={"column": "fare", "task": "binary", "positive_when": "> 15"}),
        d.update(gates={"rmse": {"max": 1}})))
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "gates.rmse" in str(info.value)


@pytest.mark.parametrize("text,reason", [
    ("- a\n- b\n", "expected a mapping at the top level, found list"),
    ("just a string\n", "expected a mapping at the top level, found str"),
    ("", "expected a mapping at the top level, found NoneType"),
    ("name: [unclosed\n", "not valid YAML"),
    ("a: 1\n  b: 2\n", "not valid YAML"),
], ids=["list", "scalar", "empty", "unclosed_bracket", "bad_indent"])
def test_unusable_yaml_raises_config_error(tmp_path, text, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_missing_file_raises_config_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_configs_rejects_duplicate_names(tmp_path):
    first = write(tmp_path, VALID, "a.yaml")
    second = write(tmp_path, VALID, "b.yml")
    with pytest.raises(ConfigError) as info:
        load_configs(tmp_path)
    msg = str(info.value)
    assert str(second) in msg and str(first) in msg
    assert "'trips' is already used" in msg


def test_load_configs_reads_every_yaml_in_a_folder(tmp_path):
    write(tmp_path, VALID, "b.yaml")
    write(tmp_path, {**VALID, "name": "another"}, "a.yml")
    (tmp_path / "notes.txt").write_text("not a config")
    assert sorted(c.name for c in load_configs(tmp_path)) == ["another", "trips"]


def test_load_configs_on_empty_folder_raises(tmp_path):
    (tmp_path / "readme.md").write_text("nothing here")
    with pytest.raises(ConfigError, match="no \\*.yaml pipeline configs") as info:
        load_configs(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_configs_on_missing_location_raises(tmp_path):
    with pytest.raises(ConfigError, match="no such config file or folder"):
        load_configs(tmp_path / "missing")


def test_load_configs_on_a_single_file(tmp_path):
    path = write(tmp_path, VALID)
    assert [c.name for c in load_configs(path)] == ["trips"]
