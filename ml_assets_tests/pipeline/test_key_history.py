"""The same primary key on two different days: the later day's row is quarantined, naming the
partition and file that hold the first. Real Dagster runs, real files, local and S3 storage."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets.core.tables import from_parquet_bytes
from ml_assets.defs.resources import StorageResource
from ml_assets_tests.conftest import BUCKET
from ml_assets_tests.helpers import (
    checks_by_name,
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

pytestmark = pytest.mark.slow

D1, D2, D3 = "2024-03-01", "2024-03-02", "2024-03-03"
LAYERS = ["raw", "processed", "quarantine"]


@pytest.fixture
def rentals(tmp_path, monkeypatch):
    """Three days of per-day CSV files; day 2's row 5 and day 3's row 7 reuse day 1's row 3 id."""
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    src = tmp_path / "src"
    write_rentals(src, dt.date(2024, 3, 1), days=3, rows=40)
    first = pd.read_csv(src / f"{D1}.csv", dtype=str, keep_default_na=False)
    repeated = first.loc[2, "rental_id"]
    for name, row in ((D2, 4), (D3, 6)):
        frame = pd.read_csv(src / f"{name}.csv", dtype=str, keep_default_na=False)
        frame.loc[row, "rental_id"] = repeated
        frame.to_csv(src / f"{name}.csv", index=False)
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"))))
    return src, cfg, repeated


def _read(storage: StorageResource, mat, client=None) -> pd.DataFrame:
    uri = mat.metadata["dagster/uri"].value
    if uri.startswith("s3://"):
        bucket, key = uri[len("s3://"):].split("/", 1)
        return from_parquet_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return pd.read_parquet(uri)


def _quarantine(result, storage, partition, client=None) -> pd.DataFrame:
    return _read(storage, materializations(result, "quarantine")[partition], client)


def _expected_reason(src: Path | str, first_day: str = D1, row: int = 3) -> str:
    return (f"duplicate primary key ['rental_id']: same as partition {first_day} "
            f"file {src}/{first_day}.csv row {row}")


def test_key_of_an_earlier_day_is_quarantined_on_the_later_day(rentals, storage, instance):
    src, cfg, repeated = rentals
    one = materialize(cfg, storage, instance, D1, layers=LAYERS)
    assert one.success, step_errors(one)
    two = materialize(cfg, storage, instance, D2, layers=LAYERS)
    assert two.success, step_errors(two)
    q = _quarantine(two, storage, D2)
    assert q["reason"].tolist() == [_expected_reason(src)]
    assert q["_source_file"].tolist() == [f"{src}/{D2}.csv"] and q["_source_row"].tolist() == [5]
    processed = _read(storage, materializations(two, "processed")[D2])
    assert repeated not in set(processed["rental_id"]) and len(processed) == 39
    checks = checks_by_name(two)
    assert checks["processed.primary_key_unique"].passed
    assert checks["processed.primary_key_history"].passed
    meta = [e.materialization.metadata for e in two.get_asset_materialization_events()
            if e.materialization.asset_key.path[-1] == "processed"][0]
    assert meta["key_index_partitions_read"].value == 1


def test_rerunning_the_same_days_does_not_flag_their_own_keys(rentals, storage, instance):
    src, cfg, _ = rentals
    assert materialize(cfg, storage, instance, D1, layers=LAYERS).success
    again = materialize(cfg, storage, instance, D1, layers=LAYERS)
    assert again.success, step_errors(again)
    assert _quarantine(again, storage, D1).empty
    # a two-day run rewrites both days: day 2 is checked against day 1 of the same run only
    both = materialize(cfg, storage, instance, D1, D2, layers=LAYERS)
    assert both.success, step_errors(both)
    assert _quarantine(both, storage, D1).empty
    assert _quarantine(both, storage, D2)["reason"].tolist() == [_expected_reason(src)]
    rerun = materialize(cfg, storage, instance, D1, D2, layers=LAYERS)
    assert _quarantine(rerun, storage, D2)["reason"].tolist() == [_expected_reason(src)]
    assert _quarantine(rerun, storage, D1).empty


def test_backfill_order_does_not_change_which_row_is_first(rentals, storage, instance):
    src, cfg, repeated = rentals
    # the later days first: they keep the key for now
    late = materialize(cfg, storage, instance, D2, D3, layers=LAYERS)
    assert _quarantine(late, storage, D2).empty
    assert _quarantine(late, storage, D3)["reason"].tolist() == [
        _expected_reason(src, first_day=D2, row=5)]
    # the earliest day keeps its row and names the stored later day to re-materialize
    early = materialize(cfg, storage, instance, D1, layers=LAYERS)
    assert _quarantine(early, storage, D1).empty
    history = checks_by_name(early)["processed.primary_key_history"]
    assert not history.passed
    assert history.metadata["rematerialize_partitions"].value == D2
    assert history.metadata["failing_partitions"].value == D2
    assert history.metadata["first_held_in"].value == D1
    assert history.metadata["observed"].value == 1
    # re-materializing what it named gives what an in-order backfill gives
    redo = materialize(cfg, storage, instance, D2, D3, layers=LAYERS)
    assert _quarantine(redo, storage, D2)["reason"].tolist() == [_expected_reason(src)]
    assert _quarantine(redo, storage, D3)["reason"].tolist() == [_expected_reason(src)]
    assert checks_by_name(redo)["processed.primary_key_history"].passed


def test_key_history_on_s3_storage(rentals, s3_client, s3_endpoint, instance):
    src, cfg, _ = rentals
    storage = StorageResource(tables_root=f"s3://{BUCKET}/tables",
                              models_root=f"s3://{BUCKET}/models", s3_endpoint_url=s3_endpoint,
                              s3_region="us-east-1")
    assert materialize(cfg, storage, instance, D1, layers=LAYERS).success
    two = materialize(cfg, storage, instance, D2, layers=LAYERS)
    assert two.success, step_errors(two)
    assert _quarantine(two, storage, D2, s3_client)["reason"].tolist() == [_expected_reason(src)]
    index = s3_client.list_objects_v2(Bucket=BUCKET, Prefix="tables/_key_index/")["Contents"]
    assert sorted(o["Key"] for o in index) == [
        f"tables/_key_index/rentals/processed/{D1}.parquet",
        f"tables/_key_index/rentals/processed/{D2}.parquet"]
    head = s3_client.head_object(Bucket=BUCKET, Key=index[0]["Key"])
    assert head.get("ServerSideEncryption") == "AES256"
    body = s3_client.get_object(Bucket=BUCKET, Key=index[1]["Key"])["Body"].read()
    assert len(pd.read_parquet(io.BytesIO(body))) == 39  # day 2's kept keys
    # a re-run of day 2 reads day 1's index only, not its own
    again = materialize(cfg, storage, instance, D2, layers=LAYERS)
    assert _quarantine(again, storage, D2, s3_client)["reason"].tolist() == [_expected_reason(src)]
