"""The API's endpoints in process (FastAPI's TestClient runs the app's lifespan): validation
with field names, limits, unknown levels, readiness, model info, metrics, admin auth."""

from __future__ import annotations

import json
import warnings

import pytest

with warnings.catch_warnings():  # starlette 1.x asks for `httpx2`; httpx is what is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from ml_assets.core.lifecycle import set_alias_change
from ml_assets.serving import create_app
from ml_assets_tests.helpers import flights_config
from ml_assets_tests.serving.conftest import SERVED_DAYS, env, records

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once

TOKEN = "s3cret-admin-token-0123456789"


@pytest.fixture
def rows(trained):
    features, batch = trained.days[SERVED_DAYS[0]]
    return records(features), batch


@pytest.fixture
def client(trained, serving_storage):
    app = create_app(trained.cfg, serving_storage, env(admin_token=TOKEN), poll=False)
    with TestClient(app) as c:
        yield c


def test_health_ready_model_and_metrics(client, trained):
    assert client.get("/health").json() == {"status": "ok", "pipeline": "flights"}
    assert client.get("/ready").json() == {"ready": True, "pipeline": "flights",
                                           "production": "v1.0.0", "canary": None}
    info = client.get("/model").json()
    prod = info["production"]
    assert (prod["version"], prod["model_id"]) == ("v1.0.0", trained.v1.model_id)
    assert prod["metrics"]["roc_auc"] == trained.v1.metrics["roc_auc"]
    assert prod["trained_on"]["train"] == [trained.v1.sidecar["train_days"][0],
                                           trained.v1.sidecar["train_days"][-1]]
    assert prod["trained_on"]["as_of"] == "2013-01-10" and prod["fast_path"] is True
    schema = prod["input_schema"]
    assert "distance" in schema["required"] and "dest" in schema["required"]
    assert "flight" in schema["properties"] and "flight" not in schema["required"]
    assert info["canary"] is None and info["canary_share"] == 0.0
    text = client.get("/metrics").text
    assert 'ml_assets_serving_model_info{created_at=' in text
    assert f'model_id="{trained.v1.model_id}",model_version="v1.0.0",role="production"' in text
    assert 'ml_assets_serving_requests_total{endpoint="/model",status="200"} 1.0' in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/health", "/ready", "/model", "/metrics", "/admin/reload"} <= set(paths)
    assert "422" in paths["/predict"]["post"]["responses"]


def test_one_record_and_a_list_return_each_prediction_with_its_version(client, rows):
    body, batch = rows
    one = client.post("/predict", json=body[3])
    assert one.status_code == 200
    assert one.headers["x-model-version"] == "v1.0.0" and one.headers["x-model-role"] == "production"
    [p] = one.json()["predictions"]
    assert p["prediction"] == batch["prediction"][3] and p["model_version"] == "v1.0.0"
    assert p["flight"] == body[3]["flight"]  # keys are echoed
    many = client.post("/predict", json=body[:5]).json()
    assert [p["prediction"] for p in many["predictions"]] == batch["prediction"][:5].tolist()
    assert "unknown_levels" not in many


def test_an_unknown_level_is_scored_as_missing_like_in_training(client, rows):
    body, _ = rows
    unknown = client.post("/predict", json={**body[0], "dest": "ZZZ"}).json()
    missing = client.post("/predict", json={**body[0], "dest": None}).json()
    assert unknown["unknown_levels"] == {"dest": 1}
    assert unknown["predictions"][0]["prediction"] == missing["predictions"][0]["prediction"]
    both = client.post("/predict", json=[{**body[0], "dest": "ZZZ"}, {**body[1], "carrier": "??"}])
    assert both.json()["unknown_levels"] == {"carrier": 1, "dest": 1}
    assert 'ml_assets_serving_unknown_levels_total{feature="dest"} 2.0' in client.get("/metrics").text


def _without(record: dict, field: str) -> dict:
    return {k: v for k, v in record.items() if k != field}


@pytest.mark.parametrize(("make_body", "message", "loc"), [
    (lambda r: _without(r[0], "distance"), "the record, field 'distance': field required",
     ["body", "distance"]),
    (lambda r: [r[0], _without(r[1], "temp")], "record 1, field 'temp': field required",
     ["body", 1, "temp"]),
    (lambda r: {**r[0], "distance": "1400"}, "field 'distance': input should be a valid number",
     ["body", "distance"]),
    (lambda r: {**r[0], "distance": True}, "field 'distance': input should be a valid number",
     ["body", "distance"]),
    (lambda r: {**r[0], "dest": 5}, "field 'dest': input should be a valid string", ["body", "dest"]),
    (lambda r: {**r[0], "flight": "x"}, "field 'flight': input should be a valid integer",
     ["body", "flight"]),
    (lambda r: [r[0], 7], "record 1: input should be an object", ["body", 1]),
    (lambda r: [], "the list of records is empty", ["body"]),
    (lambda r: "just text", "must be a JSON object (one record) or a JSON array", ["body"]),
])
def test_bad_records_are_422_naming_the_field(client, rows, make_body, message, loc):
    response = client.post("/predict", json=make_body(rows[0]))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation"
    assert message in body["message"]
    assert body["detail"][0]["loc"] == loc


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "the body is not valid JSON"),
    (b'{"distance": NaN}', "field 'distance': input should be a finite number"),
])
def test_a_body_that_is_not_json_is_422(client, content, message):
    response = client.post("/predict", content=content)
    assert response.status_code == 422 and message in response.json()["message"]


@pytest.mark.parametrize(("encode", "message"), [
    (lambda text: b"\xef\xbb\xbf" + text.encode(), "starts with a UTF-8 byte-order mark"),
    (lambda text: text.encode("utf-16"), "looks like UTF-16 or UTF-32"),
    (lambda text: __import__("gzip").compress(text.encode()), "is gzip-compressed"),
    (lambda text: b"   ", "the body is empty"),
    (lambda text: b"null", "the body is JSON null: the body must be a JSON object"),
    (lambda text: b" 42", "the body is a JSON number: the body must"),
    (lambda text: b'"text"', "the body is a JSON string: the body must"),
])
def test_a_body_in_another_encoding_says_so(client, rows, encode, message):
    response = client.post("/predict", content=encode(json.dumps(rows[0][0])),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert message in response.json()["message"], response.text


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_declared_json_is_415(client, rows, media):
    response = client.post("/predict", content=json.dumps(rows[0][0]),
                           headers={"content-type": media})
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["error"] == "unsupported_media_type"
    assert "expected Content-Type application/json" in body["message"] and media in body["message"]
    for ok in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = client.post("/predict", content=json.dumps(rows[0][0]),
                               headers={"content-type": ok})
        assert response.status_code == 200, (ok, response.text)
    assert 'errors_total{type="unsupported_media_type"} 1.0' in client.get("/metrics").text


def test_a_non_finite_number_is_refused(client, rows):
    text = json.dumps({**rows[0][0], "distance": 1}).replace('"distance": 1', '"distance": 1e999')
    response = client.post("/predict", content=text)
    assert response.status_code == 422
    assert "field 'distance': input should be a finite number" in response.json()["message"]


def test_limits_from_config_are_413(trained, serving_storage, rows):
    cfg = flights_config(serving={"max_batch_rows": 3, "max_body_bytes": 4096})
    with TestClient(create_app(cfg, serving_storage, env(), poll=False)) as c:
        many = c.post("/predict", json=rows[0][:4])
        assert many.status_code == 413
        assert "4 records in one request; the limit is 3 (serving.max_batch_rows)" in many.text
        big = c.post("/predict", json=[rows[0][0]] * 3 + [{"padding": "x" * 5000}])
        assert big.status_code == 413 and "the limit is 4096 (serving.max_body_bytes)" in big.text
        assert c.post("/predict", json=rows[0][:3]).status_code == 200
        text = c.get("/metrics").text
    assert 'ml_assets_serving_errors_total{type="batch_too_large"} 1.0' in text
    assert 'ml_assets_serving_errors_total{type="body_too_large"} 1.0' in text


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\tkey"])
def test_a_bad_request_key_header_is_422(client, rows, key):
    response = client.post("/predict", json=rows[0][0], headers={"X-Request-Key": key})
    assert response.status_code == 422
    assert "X-Request-Key must be 1..200 printable characters" in response.json()["message"]


def test_no_production_model_means_not_ready_and_503(trained, serving_storage, rows):
    serving_storage.models().move_aliases("flights", set_alias_change("production", None, {}))
    with TestClient(create_app(trained.cfg, serving_storage, env(), poll=False)) as c:
        assert c.get("/health").status_code == 200
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        response = c.post("/predict", json=rows[0][0])
        assert response.status_code == 503 and "no production model" in response.json()["message"]


def test_admin_endpoints_need_the_bearer_token(client, trained, serving_storage):
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["result"] == "unchanged"
    assert 'ml_assets_serving_errors_total{type="unauthorized"} 3.0' in client.get("/metrics").text
    with TestClient(create_app(trained.cfg, serving_storage, env(), poll=False)) as off:
        response = off.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 403
        assert "set ML_ASSETS_ADMIN_TOKEN" in response.json()["message"]


def test_reload_swaps_to_the_new_production(client, trained, serving_storage, rows):
    serving_storage.models().move_aliases("flights", set_alias_change("production", trained.v2, {}))
    before = client.post("/predict", json=rows[0][0]).json()
    assert before["model_version"] == "v1.0.0"  # no polling in this app: nothing moved yet
    swapped = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert swapped["result"] == "swapped" and swapped["production"].startswith("v1.1.0")
    after = client.post("/predict", json=rows[0][0]).json()
    assert after["model_version"] == "v1.1.0" and after["model_id"] == trained.v2.model_id
    text = client.get("/metrics").text
    assert 'ml_assets_serving_prediction_requests_total{model_version="v1.1.0",role="production"} 1.0' in text


def test_a_model_that_cannot_score_is_a_500_never_a_silent_answer(client, rows, monkeypatch):
    from ml_assets.serving.schema import ServedModel

    def broken(self, *args):
        raise RuntimeError("booster exploded")

    monkeypatch.setattr(ServedModel, "predict_one", broken)
    monkeypatch.setattr(ServedModel, "predict_frame", broken)
    monkeypatch.setattr(ServedModel, "predict_columns", broken)
    for body in (rows[0][0], rows[0][:2]):
        response = client.post("/predict", json=body)
        assert response.status_code == 500
        assert "v1.0.0 could not score the request: RuntimeError: booster exploded" in \
            response.json()["message"]
    assert 'ml_assets_serving_errors_total{type="internal"} 2.0' in client.get("/metrics").text
