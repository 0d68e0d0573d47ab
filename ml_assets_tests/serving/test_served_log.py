"""The served-predictions log and its chunk files, without a server: buffering, flushing by
size, one chunk per UTC day, sampling, a storage outage (rows kept, then bounded), and a day's
table that is the same whatever order the chunks are listed in."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.core.served import chunk_keys, collect, served_columns
from ml_assets.core.storage import LocalStore
from ml_assets.core.tables import content_hash
from ml_assets.serving.log import ServedLog
from ml_assets.serving.metrics import ServingMetrics
from ml_assets_tests.helpers import flights_config

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once

PREFIX = "flights/served_predictions"


class Clock:
    def __init__(self, start: dt.datetime):
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


CFG = flights_config()


def _record(i: int) -> dict:
    cfg = CFG
    rec = {c: float(i) for c in cfg.features.numeric}
    rec.update({c: "X" for c in cfg.features.categorical})
    rec.update({"year": 2013, "month": 1, "day": 1, "flight": i})
    return rec


def _columns(records: list[dict]) -> tuple[pd.DataFrame, dict]:
    """A batch as the API hands it over: the typed feature frame and the key columns."""
    features = pd.DataFrame({c: [r[c] for r in records] for c in CFG.feature_columns})
    keys = {k: [r[k] for r in records] for k in ("year", "month", "day", "flight")}
    return features, keys


def _meta(clock: Clock, request: str, role: str = "production") -> dict:
    return {"served_at": clock(), "request_id": request, "request_key": None, "role": role,
            "model_id": "abc", "model_version": "v1.0.0"}


def _log(tmp_path, clock, **serving) -> tuple[ServedLog, LocalStore, ServingMetrics]:
    cfg = flights_config(serving=serving)
    store = LocalStore(str(tmp_path))
    metrics = ServingMetrics()
    return ServedLog(store, PREFIX, cfg, metrics, clock=clock), store, metrics


def test_rows_are_buffered_then_written_as_one_chunk_per_day(tmp_path):
    clock = Clock(dt.datetime(2013, 1, 20, 23, 59, 59))
    log, store, _ = _log(tmp_path, clock)
    log.add_one(_meta(clock, "r1"), _record(1), 0.25)
    log.add_many(_meta(clock, "r2"), *_columns([_record(2), _record(3)]), np.array([0.5, 0.75]))
    assert store.list(PREFIX) == []  # nothing written yet
    clock.now = dt.datetime(2013, 1, 21, 0, 0, 1)
    log.add_one(_meta(clock, "r3", role="canary"), _record(4), 0.9)
    assert log.flush() == 4
    assert len(chunk_keys(store, PREFIX, "2013-01-20")) == 1
    assert len(chunk_keys(store, PREFIX, "2013-01-21")) == 1
    day, chunks = collect(store, PREFIX, "2013-01-20", flights_config())
    assert chunks == 1 and day["request_id"].tolist() == ["r1", "r2", "r2"]
    assert day["row"].tolist() == [0, 0, 1] and day["prediction"].tolist() == [0.25, 0.5, 0.75]
    assert day["predicted_class"].tolist() == [0, 1, 1]
    assert list(day.columns) == list(served_columns(flights_config()))
    assert [str(t) for t in day.dtypes] == list(served_columns(flights_config()).values())
    [canary] = collect(store, PREFIX, "2013-01-21", flights_config())[0].itertuples()
    assert (canary.role, canary.flight) == ("canary", 4)


def test_the_writer_thread_flushes_when_the_buffer_is_full(tmp_path):
    clock = Clock(dt.datetime(2013, 1, 20, 12))
    log, store, metrics = _log(tmp_path, clock, flush_rows=3, flush_seconds=3600)
    log.start()
    try:
        log.add_many(_meta(clock, "r1"), *_columns([_record(i) for i in range(3)]), np.zeros(3))
        from ml_assets_tests.serving.conftest import wait_for

        assert wait_for(lambda: len(chunk_keys(store, PREFIX, "2013-01-20")) == 1, 10)
    finally:
        log.close()
    assert 'ml_assets_serving_served_rows_total{outcome="logged"} 3.0' in _text(metrics)


def test_sampling(tmp_path):
    clock = Clock(dt.datetime(2013, 1, 20, 12))
    log, store, metrics = _log(tmp_path, clock, sample_rate=0.25)
    log.add_many(_meta(clock, "r1"), *_columns([_record(i) for i in range(2000)]), np.zeros(2000))
    written = log.flush()
    assert 350 < written < 650
    assert f'outcome="sampled_out"}} {float(2000 - written)}' in _text(metrics)
    off, off_store, _ = _log(tmp_path / "off", clock, sample_rate=0.0)
    off.add_one(_meta(clock, "r2"), _record(1), 0.5)
    assert off.flush() == 0 and off_store.list("") == []


def test_a_storage_outage_keeps_rows_for_the_next_flush_within_a_bound(tmp_path):
    clock = Clock(dt.datetime(2013, 1, 20, 12))
    log, store, metrics = _log(tmp_path, clock, flush_rows=2)
    real_put = store.put
    store.put = lambda key, data: (_ for _ in ()).throw(OSError("disk full"))
    log.add_many(_meta(clock, "r1"), *_columns([_record(i) for i in range(15)]), np.zeros(15))
    assert log.flush() == 0  # kept
    log.add_many(_meta(clock, "r2"), *_columns([_record(i) for i in range(15)]), np.zeros(15))
    assert log.flush() == 0  # 30 rows > 10 x flush_rows: the oldest 10 dropped
    text = _text(metrics)
    assert 'ml_assets_serving_served_chunks_total{outcome="failed"} 2.0' in text
    assert 'ml_assets_serving_served_rows_total{outcome="dropped"} 10.0' in text
    store.put = real_put
    assert log.flush() == 20
    table, _ = collect(store, PREFIX, "2013-01-20", flights_config())
    assert table["request_id"].tolist() == ["r1"] * 5 + ["r2"] * 15


def test_a_days_table_does_not_depend_on_chunk_listing_order(tmp_path):
    clock = Clock(dt.datetime(2013, 1, 20, 8))
    log, store, _ = _log(tmp_path, clock)
    for i in range(5):
        clock.now += dt.timedelta(minutes=1)
        log.add_one(_meta(clock, f"r{i}"), _record(i), i / 10)
        log.flush()
    cfg = flights_config()
    table, chunks = collect(store, PREFIX, "2013-01-20", cfg)
    assert chunks == 5 and table["request_id"].tolist() == [f"r{i}" for i in range(5)]
    original = store.list
    store.list = lambda prefix: list(reversed(original(prefix)))
    assert content_hash(collect(store, PREFIX, "2013-01-20", cfg)[0]) == content_hash(table)


@pytest.mark.parametrize("day", ["2013-1-20", "../x", "2013-01-20/.."])
def test_a_partition_key_that_is_not_a_day_is_refused(tmp_path, day):
    with pytest.raises(ValueError):
        collect(LocalStore(str(tmp_path)), PREFIX, day, flights_config())


def _text(metrics: ServingMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_served_columns_follow_the_config():
    cols = served_columns(flights_config())
    assert list(cols)[:7] == ["served_at", "request_id", "row", "request_key", "role",
                              "model_id", "model_version"]
    # primary-key columns that are not features are keys; carrier and origin are features
    assert [c for c in ("year", "month", "day", "flight", "carrier") if c in cols][:4] == \
        ["year", "month", "day", "flight"]
    assert cols["flight"] == "Int64" and cols["carrier"] == "string"
    assert pd.api.types.is_float_dtype(cols["distance"]) and cols["predicted_class"] == "Int64"
