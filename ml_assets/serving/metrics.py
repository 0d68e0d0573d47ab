"""Prometheus metrics of the API (text format at GET /metrics), in a registry of its own so
that several apps (tests) never share counters.

Every model-related series carries `model_version` and `role` (production | canary), so a
canary's latency, error rate and prediction distribution sit beside production's:

    ml_assets_serving_requests_total{endpoint, status}
    ml_assets_serving_request_seconds{endpoint}                     histogram
    ml_assets_serving_errors_total{type}                            validation, body_too_large,
                                                                    unsupported_media_type,
                                                                    batch_too_large, no_model,
                                                                    bad_header, unauthorized,
                                                                    admin_disabled, internal
    ml_assets_serving_prediction_requests_total{model_version, role}
    ml_assets_serving_predictions_total{model_version, role}        rows scored
    ml_assets_serving_scoring_seconds{model_version, role}          histogram, per request
    ml_assets_serving_prediction_value{model_version, role}         histogram of predictions
    ml_assets_serving_unknown_levels_total{feature}
    ml_assets_serving_model_info{role, model_version, model_id, ...} the loaded models (info)
    ml_assets_serving_canary_share
    ml_assets_serving_alias_generation
    ml_assets_serving_reloads_total{result}                         swapped, unchanged, failed
    ml_assets_serving_served_rows_total{outcome}                    logged, dropped, sampled_out
    ml_assets_serving_served_chunks_total{outcome}                  written, failed
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "ml_assets_serving"


class ModelSeries(NamedTuple):
    requests: Counter
    predictions: Counter
    seconds: Histogram
    values: Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5)
PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class ServingMetrics:
    def __init__(self, binary: bool = True):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.request_seconds = Histogram(f"{PREFIX}_request_seconds",
                                         "Time from request to response, by endpoint.",
                                         ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Refused or failed requests by type.",
                              ["type"], registry=r)
        self.prediction_requests = Counter(f"{PREFIX}_prediction_requests",
                                           "Successful /predict requests by the model that "
                                           "answered.", ["model_version", "role"], registry=r)
        self.predictions = Counter(f"{PREFIX}_predictions", "Rows scored, by model version.",
                                   ["model_version", "role"], registry=r)
        self.scoring_seconds = Histogram(f"{PREFIX}_scoring_seconds",
                                         "Validation and scoring time of one /predict request.",
                                         ["model_version", "role"], buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.prediction_value = Histogram(
            f"{PREFIX}_prediction_value", "Predictions, by model version (compare a canary's "
            "distribution with production's).", ["model_version", "role"],
            buckets=PROBABILITY_BUCKETS if binary else Histogram.DEFAULT_BUCKETS, registry=r)
        self.unknown_levels = Counter(f"{PREFIX}_unknown_levels",
                                      "Categorical values the model never saw (scored as "
                                      "missing), by feature.", ["feature"], registry=r)
        self.model_info = Info(f"{PREFIX}_model", "The models loaded, by role.", ["role"],
                               registry=r)
        self.canary_share = Gauge(f"{PREFIX}_canary_share",
                                  "Share of requests routed to the canary (0: none).", registry=r)
        self.alias_generation = Gauge(f"{PREFIX}_alias_generation",
                                      "Generation of the aliases document being served.",
                                      registry=r)
        self.reloads = Counter(f"{PREFIX}_reloads", "Alias checks by result.", ["result"],
                               registry=r)
        self.served_rows = Counter(f"{PREFIX}_served_rows",
                                   "Served predictions by what happened to their log row.",
                                   ["outcome"], registry=r)
        self.served_chunks = Counter(f"{PREFIX}_served_chunks",
                                     "served_predictions chunk files by outcome.", ["outcome"],
                                     registry=r)
        self._series: dict[tuple[str, str], ModelSeries] = {}

    def for_model(self, version: str, role: str) -> ModelSeries:
        """The labelled series of one model version and role (looked up once, then cached)."""
        key = (version, role)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ModelSeries(
                self.prediction_requests.labels(version, role),
                self.predictions.labels(version, role),
                self.scoring_seconds.labels(version, role),
                self.prediction_value.labels(version, role))
        return series

    def set_models(self, roles: dict[str, dict[str, str] | None]) -> None:
        for role, info in roles.items():
            if info is None:
                with contextlib.suppress(KeyError):
                    self.model_info.remove(role)
            else:
                self.model_info.labels(role).info(info)
