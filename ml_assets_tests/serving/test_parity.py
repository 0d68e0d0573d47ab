"""Parity: for the same real flights rows, the API (through HTTP, uvicorn on loopback) returns
exactly the values the batch `predictions` asset wrote, on the batch path and on the one-record
fast path; and what the API served lands in the `served_predictions` table."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest

from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource
from ml_assets.serving import create_app
from ml_assets_tests.helpers import materializations
from ml_assets_tests.serving.conftest import SERVED_DAYS, env, records

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once

KEYS = ["year", "month", "day", "carrier", "flight", "origin"]
SERVED_ON = dt.datetime(2013, 1, 20, 12, 0, 0)  # the API's clock: a day inside the partitions


def test_api_predictions_equal_the_batch_predictions_asset(trained, serving_storage, live_server,
                                                           instance):
    app = create_app(trained.cfg, serving_storage, env(), clock=lambda: SERVED_ON, poll=False)
    server = live_server(app)
    served_rows = 0
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for day in SERVED_DAYS:
            features, batch = trained.days[day]
            assert len(features) == len(batch) > 500
            body = records(features)

            # the whole day in one request: the fast batch path (numpy), as served
            assert client.get("/model").json()["production"]["fast_path"] is True
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["model_version"] == "v1.0.0" == response.headers["x-model-version"]
            got = np.array([p["prediction"] for p in answer["predictions"]])
            assert np.array_equal(got, batch["prediction"].to_numpy())  # identical, not close
            assert [p["predicted_class"] for p in answer["predictions"]] == \
                batch["predicted_class"].tolist()
            assert {p["model_version"] for p in answer["predictions"]} == {"v1.0.0"}
            assert [p["flight"] for p in answer["predictions"]] == features["flight"].tolist()

            # one record per request: the fast path, on rows with missing values among them
            with_nulls = features.index[features[["temp", "plane_year"]].isna().any(axis=1)]
            sample = sorted(set(range(40)) | set(with_nulls[:40]))
            for i in sample:
                one = client.post("/predict", json=body[i])
                assert one.status_code == 200, one.text
                [p] = one.json()["predictions"]
                assert p["prediction"] == batch["prediction"].iloc[i], (day, i)
                assert p["model_version"] == "v1.0.0"
            served_rows += len(body) + len(sample)
        assert len(with_nulls) > 0
        metrics = client.get("/metrics").text
    assert (f'ml_assets_serving_predictions_total{{model_version="v1.0.0",role="production"}} '
            f"{float(served_rows)}") in metrics
    server.stop()  # flushes the served-predictions log

    # the served rows, collected by the daily asset through the table IO manager
    built = build_pipeline(trained.cfg)
    result = dg.materialize(
        built.assets, selection=[built.names.served_predictions], instance=instance,
        partition_key=SERVED_ON.date().isoformat(),
        resources={"storage": serving_storage, "alerts": AlertsResource(),
                   "table_io_manager": TableIOManager(storage=serving_storage)})
    assert result.success
    mat = materializations(result, "served_predictions")["2013-01-20"]
    table = pd.read_parquet(mat.metadata["dagster/uri"].value)
    assert len(table) == served_rows == mat.metadata["dagster/row_count"].value
    assert mat.metadata["content_hash"].value and mat.metadata["model_versions"].value == "v1.0.0"
    assert set(table["model_version"]) == {"v1.0.0"} and set(table["role"]) == {"production"}
    assert table["served_at"].dt.date.unique().tolist() == [SERVED_ON.date()]
    first_day = trained.days[SERVED_DAYS[0]][1]
    sizes = table["request_id"].value_counts()
    [request] = sizes.index[sizes == len(first_day)]
    whole_day = table[table["request_id"] == request].sort_values("row")
    assert np.array_equal(whole_day["prediction"].to_numpy(), first_day["prediction"].to_numpy())
    assert whole_day[KEYS[:3] + ["flight"]].astype("int64").values.tolist() == \
        first_day[["year", "month", "day", "flight"]].astype("int64").values.tolist()


def test_served_predictions_of_a_day_without_traffic_is_an_empty_table(trained, serving_storage,
                                                                     instance):
    built = build_pipeline(trained.cfg)
    result = dg.materialize(
        built.assets, selection=[built.names.served_predictions], instance=instance,
        partition_key="2013-01-21",
        resources={"storage": serving_storage, "alerts": AlertsResource(),
                   "table_io_manager": TableIOManager(storage=serving_storage)})
    assert result.success
    mat = materializations(result, "served_predictions")["2013-01-21"]
    table = pd.read_parquet(mat.metadata["dagster/uri"].value)
    assert len(table) == 0 and "prediction" in table.columns and "model_version" in table.columns
    assert mat.metadata["chunks"].value == 0


def test_body_json_round_trip_keeps_float_values_exact(trained):
    """The parity above relies on JSON carrying float64 exactly (repr round-trips)."""
    features, _ = trained.days[SERVED_DAYS[0]]
    values = features.select_dtypes("float64").to_numpy().ravel()
    values = values[~np.isnan(values)]
    assert np.array_equal(np.array(json.loads(json.dumps(values.tolist()))), values)


def test_thread_counts_do_not_change_predictions(trained, serving_storage):
    """One record is predicted on one thread, batches on serving.batch_threads: same values as
    the batch asset whatever the thread count."""
    from ml_assets.serving.models import load_model

    features, batch = trained.days[SERVED_DAYS[1]]
    version = serving_storage.models().get("flights", trained.v1.model_id)
    for threads in (0, 1, 2):
        served = load_model(serving_storage.models(), version, {}, batch_threads=threads)
        columns = {c: features[c].astype(object).where(features[c].notna(), None).tolist()
                   for c in served.schema.features}
        assert np.array_equal(served.predict_frame(served.schema.frame(columns)),
                              batch["prediction"].to_numpy())
        assert np.array_equal(served.predict_columns(columns, len(features)),
                              batch["prediction"].to_numpy())
        assert served.predict_one({c: v[5] for c, v in columns.items()})[0] == \
            batch["prediction"].iloc[5]
