"""The same pipeline against a real S3 HTTP endpoint on loopback (moto's ThreadedMotoServer)."""

from __future__ import annotations

import datetime as dt
import io

import boto3
import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets.definitions import storage_for
from ml_assets.environment import settings_from_env
from ml_assets_tests.conftest import BUCKET
from ml_assets_tests.helpers import (
    error_checks,
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

pytestmark = pytest.mark.slow


def test_pipeline_on_s3_storage_and_s3_source(tmp_path, s3_endpoint, instance, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for path in write_rentals(tmp_path / "src", dt.date(2024, 3, 1), days=12, rows=200):
        client.upload_file(str(path), BUCKET, f"landing/rentals/{path.name}")

    # storage is chosen by the environment helper, exactly as the code location does it
    settings = settings_from_env({"ENV": "production", "S3_BUCKET": BUCKET,
                                  "AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1"})
    storage = storage_for(settings)
    assert storage.tables_root == f"s3://{BUCKET}/tables"

    uri = f"s3://{BUCKET}/landing/rentals/{{date}}.csv"
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(
        uri, drift={"report": "always", "report_max_per_run": 1})))
    result = materialize(cfg, storage, instance, "2024-03-01", "2024-03-12", as_of="2024-03-10")
    assert result.success, step_errors(result)
    assert error_checks(result) == []
    # the newest day's Evidently report is stored on S3 beside the drift table
    report = materializations(result, "drift")["2024-03-12"].metadata["report"].value
    assert report.startswith(f"s3://{BUCKET}/tables/rentals/drift/2024-03-12/report-")
    html = client.get_object(Bucket=BUCKET, Key=report.split(f"{BUCKET}/", 1)[1])["Body"].read()
    assert b"distance_km" in html and b"<html" in html.lower() and len(html) > 10_000
    # every object the platform wrote is encrypted at rest (SSE-S3 by default)
    written = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
               for o in page.get("Contents", []) if not o["Key"].startswith("landing/")]
    assert any(k.startswith("models/") for k in written) and len(written) > 50
    for key in written:
        assert client.head_object(Bucket=BUCKET, Key=key).get("ServerSideEncryption") == "AES256", key

    preds = materializations(result, "predictions")["2024-03-11"]
    pred_uri = preds.metadata["dagster/uri"].value
    assert pred_uri.startswith(f"s3://{BUCKET}/tables/rentals/predictions/2024-03-11/")
    body = client.get_object(Bucket=BUCKET, Key=pred_uri.split(f"{BUCKET}/", 1)[1])["Body"].read()
    assert len(pd.read_parquet(io.BytesIO(body))) == 200

    model = materializations(result, "model")[None].metadata
    assert model["model_uri"].value.startswith(f"s3://{BUCKET}/models/rentals/")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"]]
    assert any(k.endswith("/model.txt") for k in keys) and any(k.endswith("/model.json") for k in keys)
    # nothing but the raw landing files and our own outputs is in the bucket; no temp objects
    all_keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(k.startswith(("landing/", "tables/", "models/")) for k in all_keys)
    assert not any(".tmp" in k for k in all_keys)


def test_missing_s3_source_file_is_a_clear_error(tmp_path, s3_endpoint, instance, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")  # a missing key is reported before any read
    storage = storage_for(settings_from_env({"S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": s3_endpoint}))
    uri = f"s3://{BUCKET}/landing/none/{{date}}.csv"
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(uri, pii={})))
    result = materialize(cfg, storage, instance, "2024-03-01", layers=["raw"])
    assert not result.success
    assert f"no source file matches s3://{BUCKET}/landing/none/2024-03-01.csv" in step_errors(result)
