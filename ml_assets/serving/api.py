"""The FastAPI app: real-time predictions from the model store's `production` (and `canary`)
model, with hot swap, Prometheus metrics and a log of what was served.

    POST /predict        one record (a JSON object) or a list of records -> predictions, each
                         with the model version that made it
    GET  /health         the process is alive
    GET  /ready          a model is loaded (503 until one is)
    GET  /model          the models served: version, id, metrics, trained-on window, input schema
    GET  /metrics        Prometheus text format
    POST /admin/reload   check the aliases now (bearer token from ML_ASSETS_ADMIN_TOKEN; without
                         it the admin endpoints are off)

Run it with `make serve` (uvicorn ml_assets.serving:app). Storage, config and pipeline come from
the same environment as the platform (README: "Serving").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route

from ml_assets.config import ConfigError, PipelineConfig, load_configs
from ml_assets.core.registry import ModelStore
from ml_assets.core.served import served_key_columns
from ml_assets.core.storage import ObjectStore
from ml_assets.environment import EnvironmentError_, ServingEnv, serving_env
from ml_assets.serving.log import ServedLog, utcnow
from ml_assets.serving.metrics import ServingMetrics
from ml_assets.serving.models import ModelWatcher, ServingState
from ml_assets.serving.schema import Batch, RequestError, ServedModel

log = logging.getLogger("ml_assets.serving")

#: Requests of at most this many records are scored on the event loop; larger ones in a worker
#: thread (LightGBM releases the GIL while it predicts).
INLINE_ROWS = 64
MAX_KEY_CHARS = 200
ENDPOINTS = ("/predict", "/health", "/ready", "/model", "/metrics", "/admin/reload")


PREDICT_OPENAPI = {"post": {
    "summary": "Predictions for one record or a list of records",
    "description": "One record (a JSON object) or a list of records; GET /model shows the fields "
                   "the served model needs (its input_schema). Optional header X-Request-Key "
                   "makes the canary choice sticky.",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
    "responses": {"200": {"description": "each prediction with the model version that made it"},
                  "413": {"description": "body over serving.max_body_bytes or more records than "
                                         "serving.max_batch_rows"},
                  "415": {"description": "a Content-Type other than application/json"},
                  "422": {"description": "a missing or mistyped field, named"},
                  "503": {"description": "no model loaded yet"}}}}


class ServingSetupError(ValueError):
    """The API cannot start: bad config, environment or pipeline choice."""


@dataclass
class Serving:
    """Everything one app instance holds."""

    cfg: PipelineConfig
    models: ModelStore
    tables: ObjectStore
    env: ServingEnv
    metrics: ServingMetrics
    watcher: ModelWatcher
    served: ServedLog
    started_at: str = ""


def pick_pipeline(configs: list[PipelineConfig], name: str | None) -> PipelineConfig:
    if name is not None:
        for cfg in configs:
            if cfg.name == name:
                return cfg
        raise ServingSetupError(f"ML_ASSETS_PIPELINE={name!r}: no such pipeline; configured: "
                                f"{[c.name for c in configs]}")
    if len(configs) > 1:
        raise ServingSetupError(f"several pipelines configured {[c.name for c in configs]}; set "
                                "ML_ASSETS_PIPELINE to the one to serve")
    return configs[0]


def build_serving(cfg: PipelineConfig | None = None, storage: Any = None,
                  env: ServingEnv | None = None,
                  clock: Callable[[], dt.datetime] = utcnow) -> Serving:
    """Resolve config, environment and storage (from the environment for what is not given)."""
    from ml_assets.defs.names import PipelineNames

    try:
        env = env or serving_env()
        cfg = cfg or pick_pipeline(load_configs(), env.pipeline)
        if storage is None:
            from ml_assets.definitions import storage_for
            from ml_assets.environment import settings_from_env

            storage = storage_for(settings_from_env())
    except (ConfigError, EnvironmentError_) as exc:
        raise ServingSetupError(str(exc)) from None
    metrics = ServingMetrics(binary=cfg.target.task == "binary")
    models = storage.models()
    keys = {k: cfg.columns[k].dtype for k in served_key_columns(cfg)}
    watcher = ModelWatcher(models, cfg.name, keys, cfg.serving.canary_share,
                           env.poll_seconds or cfg.serving.poll_seconds, metrics,
                           batch_threads=cfg.serving.batch_threads)
    table_prefix = "/".join(PipelineNames(cfg.name).served_predictions.path)
    served = ServedLog(storage.tables(), table_prefix, cfg, metrics, clock=clock)
    return Serving(cfg, models, storage.tables(), env, metrics, watcher, served)


def create_app(cfg: PipelineConfig | None = None, storage: Any = None,
               env: ServingEnv | None = None, clock: Callable[[], dt.datetime] = utcnow,
               poll: bool = True) -> FastAPI:
    """The app for one pipeline. Without arguments everything comes from the environment, as
    for `uvicorn ml_assets.serving:app`. `poll=False` leaves alias checks to /admin/reload."""
    s = build_serving(cfg, storage, env, clock)
    cfg = s.cfg

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        s.started_at = _now()
        outcome = await run_in_threadpool(s.watcher.refresh, True)
        if s.watcher.state.production is None:
            log.warning("pipeline %s: no production model yet (%s); /ready answers 503 until "
                        "one is promoted", cfg.name, outcome.get("error", "alias not set"))
        if poll:
            s.watcher.start()
        s.served.start()
        try:
            yield
        finally:
            s.watcher.stop()
            await run_in_threadpool(s.served.close)

    app = FastAPI(title=f"ml_assets serving: {cfg.name}", lifespan=lifespan,
                  description=__doc__.split("\n\n")[0], version="1")
    app.state.serving = s
    app.add_middleware(_Instrumented, metrics=s.metrics)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        s.metrics.errors.labels("internal").inc()
        return JSONResponse({"error": "internal", "message": f"{type(exc).__name__}: {exc}"},
                            status_code=500)
    limit = cfg.serving.max_body_bytes
    max_rows = cfg.serving.max_batch_rows
    binary = cfg.target.task == "binary"

    def refuse(kind: str, status: int, message: str, detail: list | None = None,
               headers: dict | None = None) -> JSONResponse:
        s.metrics.errors.labels(kind).inc()
        body: dict[str, Any] = {"error": kind, "message": message}
        if detail:
            body["detail"] = detail
        return JSONResponse(body, status_code=status, headers=headers)

    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        state: ServingState = s.watcher.state  # read once: a swap never changes a request
        if state.production is None:
            return refuse("no_model", 503, f"pipeline {cfg.name!r} has no production model "
                          "loaded yet")
        key = request.headers.get("x-request-key")
        if key is not None and (not key or len(key) > MAX_KEY_CHARS or not key.isprintable()):
            return refuse("bad_header", 422, f"X-Request-Key must be 1..{MAX_KEY_CHARS} "
                          "printable characters", [{"loc": ["header", "X-Request-Key"],
                                                    "type": "value_error",
                                                    "msg": "invalid request key"}])
        media = request.headers.get("content-type")
        if media is not None and not _is_json_media(media):
            return refuse("unsupported_media_type", 415,
                          f"expected Content-Type application/json, found {media[:100]!r}")
        try:
            body = await _read_body(request, limit)
        except RequestError as exc:
            return refuse("body_too_large", exc.status, exc.message)
        model, role = state.route(key)
        try:
            batch = model.schema.parse(body, max_rows)
        except RequestError as exc:
            kind = "batch_too_large" if exc.status == 413 else "validation"
            return refuse(kind, exc.status, exc.message, exc.detail)
        request_id = next_id()
        meta = {"served_at": s.served.now(), "request_id": request_id, "request_key": key,
                "role": role, "model_id": model.model_id, "model_version": model.version}
        try:
            if batch.rows == 1 and model.fast_path:
                record = batch.record(0)
                value, unknown = model.predict_one(record)
                values = [value]
                unknown_levels = {c: 1 for c in unknown}
                s.served.add_one(meta, record, value)
            else:
                values, unknown_levels = await _score_many(model, batch, s.served, meta)
        except Exception as exc:  # a model that cannot score these rows: never a silent 200
            log.exception("scoring failed for %s", model.version)
            return refuse("internal", 500, f"{model.version} could not score the request: "
                          f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - start
        series = s.metrics.for_model(model.version, role)
        series.requests.inc()
        series.predictions.inc(len(values))
        series.seconds.observe(elapsed)
        for v in values[:100]:  # the distribution, without a per-row cost on big batches
            series.values.observe(v)
        for feature, count in unknown_levels.items():
            s.metrics.unknown_levels.labels(feature).inc(count)
        out = _response(model, role, request_id, batch, values, unknown_levels, binary,
                        list(model.schema.keys))
        return Response(out, media_type="application/json",
                        headers={"x-model-version": model.version, "x-model-id": model.model_id,
                                 "x-model-role": role, "x-request-id": request_id})

    # A plain Starlette route: FastAPI's dependency resolution for a bare `Request` cost ~45 us
    # of a ~200 us one-record request; the body is validated by the served model's own schema,
    # which FastAPI could not know in advance anyway. Documented in the OpenAPI below.
    app.router.routes.append(Route("/predict", predict, methods=["POST"], name="predict"))

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema["paths"]["/predict"] = PREDICT_OPENAPI
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    @app.get("/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok", "pipeline": cfg.name}

    @app.get("/ready", summary="A model is loaded and serving")
    async def ready() -> Response:
        state = s.watcher.state
        if state.production is None:
            return JSONResponse({"ready": False, "pipeline": cfg.name,
                                 "reason": s.watcher.last_error or "no production model yet"},
                                status_code=503)
        return JSONResponse({"ready": True, "pipeline": cfg.name,
                             "production": state.production.version,
                             "canary": state.canary.version if state.canary else None})

    @app.get("/model", summary="The models served: versions, metrics, training window, schema")
    async def model_info() -> Response:
        state = s.watcher.state
        body = {
            "pipeline": cfg.name,
            "production": _describe(state.production),
            "canary": _describe(state.canary),
            "canary_share": state.share if state.canary else 0.0,
            "aliases_generation": state.generation,
            "loaded_at": state.loaded_at,
            "last_check": s.watcher.last_check,
            "last_reload_error": s.watcher.last_error,
            "poll_seconds": s.watcher.poll_seconds,
            "limits": {"max_body_bytes": limit, "max_batch_rows": max_rows},
            "served_predictions": {"sample_rate": cfg.serving.sample_rate,
                                   "table": s.served.table_prefix},
        }
        return JSONResponse(body, status_code=200 if state.production else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Check the aliases now and swap if they moved")
    async def reload(request: Request) -> Response:
        denied = _authorize(request, s)
        if denied is not None:
            return denied
        outcome = await run_in_threadpool(s.watcher.refresh, True)
        status = 200 if outcome["result"] != "failed" else 503
        return JSONResponse(outcome, status_code=status)

    return app


# ---------------------------------------------------------------- helpers
def _is_json_media(content_type: str) -> bool:
    """application/json or any `+json` type, parameters (charset) aside. A request without a
    Content-Type is read as JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared)} bytes; the limit is {limit} "
                           "(serving.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes "
                               "(serving.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _score_many(model: ServedModel, batch: Batch, served: ServedLog,
                      meta: dict) -> tuple[list[float], dict[str, int]]:
    def work():
        columns, schema = batch.columns, model.schema
        if model.fast_path:
            values = model.predict_columns(columns, batch.rows)
            features = lambda: schema.frame(columns)  # noqa: E731 - built off the request path
        else:
            features = schema.frame(columns)
            values = model.predict_frame(features)
        served.add_many(meta, features, {k: columns[k] for k in schema.keys}, values, batch.rows)
        return values.tolist(), schema.unknown_levels(columns)

    if batch.rows <= INLINE_ROWS:
        return work()
    return await run_in_threadpool(work)


def _response(model: ServedModel, role: str, request_id: str, batch: Batch,
              values: list[float], unknown: dict[str, int], binary: bool,
              keys: list[str]) -> bytes:
    version, model_id = model.version, model.model_id
    if binary:
        items = [{"prediction": v, "predicted_class": int(v >= 0.5), "model_version": version}
                 for v in values]
    else:
        items = [{"prediction": v, "model_version": version} for v in values]
    for k in keys:
        for item, value in zip(items, batch.columns[k], strict=True):
            if value is not None:
                item[k] = value
    body: dict[str, Any] = {"model_version": version, "model_id": model_id, "role": role,
                            "request_id": request_id, "predictions": items}
    if unknown:
        body["unknown_levels"] = unknown
    # pydantic-core's serializer: 4x json.dumps's speed, the same shortest round-trip floats
    return pydantic_core.to_json(body)


def _describe(model: ServedModel | None) -> dict | None:
    if model is None:
        return None
    s = model.sidecar
    train_days = s.get("train_days") or [None]
    valid_days = s.get("validation_days") or [None]
    return {
        "version": model.version,
        "model_id": model.model_id,
        "created_at": s.get("created_at"),
        "task": model.loaded.task,
        "metrics": s.get("metrics", {}),
        "gate_passed": s.get("gate_passed"),
        "trained_on": {"train": [train_days[0], train_days[-1]],
                       "validation": [valid_days[0], valid_days[-1]],
                       "train_rows": s.get("train_rows"),
                       "validation_rows": s.get("validation_rows"),
                       "as_of": (s.get("lineage") or {}).get("as_of")},
        "features": {"numeric": model.schema.numeric,
                     "categorical": {c: len(v) for c, v in model.schema.categorical.items()}},
        "keys": model.schema.keys,
        "input_schema": model.schema.json_schema(),
        "fast_path": model.fast_path,
    }


def _authorize(request: Request, s: Serving) -> Response | None:
    token = s.env.admin_token
    if not token:
        s.metrics.errors.labels("admin_disabled").inc()
        return JSONResponse({"error": "admin_disabled", "message": "the admin endpoints are off: "
                             "set ML_ASSETS_ADMIN_TOKEN to turn them on"}, status_code=403)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not ok:
        s.metrics.errors.labels("unauthorized").inc()
        return JSONResponse({"error": "unauthorized",
                             "message": "an `Authorization: Bearer <token>` header with the "
                                        "admin token is required"},
                            status_code=401, headers={"www-authenticate": "Bearer"})
    return None


_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count()


def next_id() -> str:
    """A request id unique in this process (random prefix, counter): no urandom per request."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Instrumented:
    """Pure ASGI middleware: request count and latency per endpoint and status."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics
        self._cache: dict[tuple[str, int], tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            count, seconds = self._series(endpoint, status)
            count.inc()
            seconds.observe(time.perf_counter() - start)

    def _series(self, endpoint: str, status: int):
        key = (endpoint, status)
        series = self._cache.get(key)
        if series is None:
            series = self._cache[key] = (self.metrics.requests.labels(endpoint, str(status)),
                                         self.metrics.request_seconds.labels(endpoint))
        return series
