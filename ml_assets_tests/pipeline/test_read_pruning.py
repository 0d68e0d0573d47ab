"""Read pruning for glob sources: a run reads only the files (and Parquet row groups) that can
hold its days, through the file manifest kept in the store. Reads are counted with a wrapper
around the source module's read functions (and the S3 client), never timed."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import ml_assets.core.sources as sources
from ml_assets.config import PipelineConfig
from ml_assets.core import file_manifest as fm
from ml_assets.definitions import build_definitions
from ml_assets.defs.names import PipelineNames
from ml_assets.defs.resources import AlertsResource
from ml_assets_tests.helpers import materializations, materialize, step_errors
from ml_assets_tests.pipeline.hostile import START, credit_dict, credit_frame, day_name, write_day

N_DAYS = 1000


@pytest.fixture(autouse=True)
def _pii_key(monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "test-key")


@pytest.fixture
def reads(monkeypatch):
    """URIs of landing files read (whole, or opened for ranged reads), in order."""
    seen: list[str] = []
    real_read, real_open = sources.read_uri, sources.open_uri

    def read_uri(uri, client=None):
        seen.append(uri)
        return real_read(uri, client)

    def open_uri(uri, client=None, size=None):
        seen.append(uri)
        return real_open(uri, client, size)

    monkeypatch.setattr(sources, "read_uri", read_uri)
    monkeypatch.setattr(sources, "open_uri", open_uri)
    return seen


def _day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def _folder(tmp_path: Path, days: int, fmt: str = "csv", rows: int = 5) -> Path:
    src = tmp_path / "landing"
    for i in range(days):
        write_day(src, _day(i), credit_frame(_day(i), rows), fmt)
    return src


def _config(src: Path, days: int, fmt: str = "csv", **over) -> PipelineConfig:
    end = _day(days).isoformat()
    return PipelineConfig.model_validate(credit_dict(
        str(src / f"credit-*.{fmt}"), fmt, partitions={"start": START.isoformat(), "end": end},
        checks={"min_rows_per_day": 0}, **over))


@pytest.mark.slow
def test_a_one_day_run_on_1000_daily_files_reads_a_handful(tmp_path, storage, instance, reads):
    src = _folder(tmp_path, N_DAYS)
    cfg = _config(src, N_DAYS)
    day = _day(500).isoformat()
    first = materialize(cfg, storage, instance, day, layers=["raw"])
    assert first.success, step_errors(first)
    assert len(set(reads)) == N_DAYS  # the first run scans every file once, for the manifest
    manifest, _ = fm.load(storage.tables(), fm.manifest_key(cfg.name))
    assert len(manifest.files) == N_DAYS
    entry = manifest.files[str(src / day_name(_day(7), "csv"))]
    assert entry.days == [[_day(7).isoformat()] * 2] and entry.rows == 5 and entry.readable

    reads.clear()
    other = _day(800).isoformat()
    second = materialize(cfg, storage, instance, other, layers=["raw"])
    assert second.success, step_errors(second)
    assert reads == [str(src / day_name(_day(800), "csv"))]
    assert materializations(second, "raw")[other].metadata["dagster/row_count"].value == 5

    # a new file and a changed file: only they are scanned, and the day's file read
    write_day(src, _day(1000 - 1), credit_frame(_day(999), 7), "csv")  # changed (7 rows)
    path = src / "credit-late-arrivals.csv"
    credit_frame(_day(300), 3).assign(customer_id=lambda f: f["customer_id"] + "L").to_csv(
        path, index=False)
    reads.clear()
    third = materialize(cfg, storage, instance, _day(300).isoformat(), layers=["raw"])
    assert third.success, step_errors(third)
    assert collections.Counter(reads) == {str(path): 1, str(src / day_name(_day(999), "csv")): 1,
                                          str(src / day_name(_day(300), "csv")): 1}
    assert materializations(third, "raw")[_day(300).isoformat()].metadata[
        "dagster/row_count"].value == 8
    raw_events = [e for e in third.get_asset_materialization_events()
                  if e.materialization.asset_key.path[-1] == "raw"]
    meta = raw_events[-1].materialization.metadata  # run-level metadata rides on each partition
    assert meta["source_files_listed"].value == N_DAYS + 1
    assert meta["source_files_scanned"].value == 2 and meta["source_files_read"].value == 3


def test_parquet_row_groups_outside_the_run_are_not_read(tmp_path, storage, instance, monkeypatch):
    """One Parquet file holding 60 days in 60 row groups: a one-day run reads the footer, the
    timestamp column (once, for the manifest) and one row group, not the file."""
    src = tmp_path / "landing"
    src.mkdir()
    frame = pd.concat([credit_frame(_day(i), 1000) for i in range(60)], ignore_index=True)
    frame["observed_at"] = pd.to_datetime(frame["observed_at"])
    # bulk outside the contract, never read (extra_columns: drop)
    frame["note"] = [os.urandom(32).hex() for _ in range(len(frame))]
    path = src / "credit-all.parquet"
    frame.to_parquet(path, index=False, row_group_size=1000)
    cfg = _config(src, 60, "parquet")
    day = _day(42).isoformat()
    first = materialize(cfg, storage, instance, day, layers=["raw", "processed", "quarantine"])
    assert first.success, step_errors(first)
    raw = materializations(first, "raw")[day]
    assert raw.metadata["dagster/row_count"].value == 1000
    stored = pd.read_parquet(raw.metadata["dagster/uri"].value)
    assert stored["_source_row"].tolist() == list(range(42 * 1000 + 1, 43 * 1000 + 1))
    assert "note" not in stored.columns

    read_bytes = []
    real_open = sources.open_uri

    def counting_open(uri, client=None, size=None):
        handle = real_open(uri, client, size)
        real_readinto = handle.readinto

        class Counted:
            def __getattr__(self, name):
                return getattr(handle, name)

            def readinto(self, buffer):
                n = real_readinto(buffer)
                read_bytes.append(n)
                return n

            def read(self, n=-1):
                data = handle.read(n)
                read_bytes.append(len(data))
                return data

        return Counted()

    monkeypatch.setattr(sources, "open_uri", counting_open)
    second = materialize(cfg, storage, instance, _day(10).isoformat(), layers=["raw"])
    assert second.success, step_errors(second)
    assert sum(read_bytes) < os.path.getsize(path) / 10, read_bytes  # footer + one row group


def test_s3_glob_run_reads_only_its_files(tmp_path, s3_endpoint, s3_client, instance, reads):
    from ml_assets.defs.resources import StorageResource
    from ml_assets_tests.conftest import BUCKET

    local = _folder(tmp_path, 30)
    for p in sorted(local.iterdir()):
        s3_client.upload_file(str(p), BUCKET, f"landing/{p.name}")
    cfg = PipelineConfig.model_validate(credit_dict(
        f"s3://{BUCKET}/landing/credit-*.csv", "csv",
        partitions={"start": START.isoformat(), "end": _day(30).isoformat()},
        checks={"min_rows_per_day": 0}))
    storage = StorageResource(tables_root=f"s3://{BUCKET}/tables", models_root=f"s3://{BUCKET}/models",
                              s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    first = materialize(cfg, storage, instance, _day(3).isoformat(), layers=["raw"])
    assert first.success, step_errors(first)
    assert len(set(reads)) == 30  # the first run scans each file once
    reads.clear()
    second = materialize(cfg, storage, instance, _day(20).isoformat(), layers=["raw"])
    assert second.success, step_errors(second)
    assert reads == [f"s3://{BUCKET}/landing/{day_name(_day(20), 'csv')}"]
    manifest = s3_client.get_object(Bucket=BUCKET, Key=f"tables/{fm.manifest_key(cfg.name)}")
    assert len(json.loads(manifest["Body"].read())["files"]) == 30


def test_new_data_sensor_requests_old_and_new_days_of_a_changed_file(tmp_path, storage, instance):
    src = _folder(tmp_path, 10)
    cfg = _config(src, 10, automation={"cooldown_seconds": 0})
    names = PipelineNames(cfg.name)
    first = materialize(cfg, storage, instance, START.isoformat(), _day(9).isoformat(),
                        layers=["raw"])
    assert first.success, step_errors(first)
    defs = build_definitions([cfg], storage=storage, alerts=AlertsResource())
    sensor = defs.resolve_sensor_def(names.new_data_sensor)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance,
                                                        resources={"storage": storage}))
    assert not tick.run_requests
    # the file of day 3 now holds day 6's rows instead (moved): days 3 and 6, and nothing else
    path = src / day_name(_day(3), "csv")
    credit_frame(_day(6), 4).assign(customer_id=lambda f: f["customer_id"] + "M").to_csv(
        path, index=False)
    os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                        resources={"storage": storage}))
    ranges = sorted((r.tags["dagster/asset_partition_range_start"],
                     r.tags["dagster/asset_partition_range_end"]) for r in tick.run_requests)
    assert ranges == [(_day(3).isoformat(), _day(3).isoformat()),
                      (_day(6).isoformat(), _day(6).isoformat())]
    cursor = json.loads(tick.cursor)
    assert str(path) in cursor

    # a file that is gone: the days it held are re-materialized without its rows
    run = materialize(cfg, storage, instance, _day(3).isoformat(), _day(6).isoformat(),
                      layers=["raw"])
    assert run.success, step_errors(run)
    (src / day_name(_day(8), "csv")).unlink()
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                        resources={"storage": storage}))
    [request] = tick.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == _day(8).isoformat()
    assert request.tags["dagster/asset_partition_range_end"] == _day(8).isoformat()
    assert str(src / day_name(_day(8), "csv")) not in json.loads(tick.cursor)
