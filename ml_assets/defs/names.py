"""Every name a pipeline gives to Dagster, owned in one place.

A pipeline config named `flights` becomes asset keys `flights/raw`, `flights/model`, ..., a job
`flights_pipeline`, a sensor `flights_drift_retrain_sensor`, and so on. Code that needs one of
these names asks a `PipelineNames` for it; nothing rebuilds a name from a string elsewhere.

The metadata keys that carry a model's metrics and the check names of its gates are named here
too (`metric_<name>`, `gate_<name>`), with the functions that read them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

#: The layers of a pipeline's asset graph, in lineage order.
LAYERS = ("raw", "processed", "quarantine", "features", "model", "production_model",
          "predictions", "drift", "model_performance", "served_predictions")

#: The middle part of a lookup table's asset key (`flights/lookups/weather`); also its group.
LOOKUPS = "lookups"

METRIC_PREFIX = "metric_"
GATE_PREFIX = "gate_"
CHAMPION_PREFIX = "champion_metric_"

# Run tags the platform sets on the runs it launches (README: "Run tags").
TAG_TRIGGER = "ml_assets/trigger"
TAG_PIPELINE = "ml_assets/pipeline"
TAG_PARTITION = "ml_assets/partition"
TAG_DRIFT_SHARE = "ml_assets/drift_share"
TAG_ACTOR = "ml_assets/actor"
TAG_LAUNCHED_BY = "ml_assets/launched_by"
#: On runs that train: the instance admits one queued run per value (pipeline) at a time.
TAG_TRAINING = "ml_assets/training"
#: On new-data runs: their run key, so the sensor can tell which (day, file versions) it tried.
TAG_RUN_KEY = "ml_assets/run_key"
TRIGGERS = ("drift", "performance", "schedule", "new_data", "manual")

# Dagster's own tags for a single-run backfill of a partition range.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
#: Dagster's tag of a run of one partition.
PARTITION_TAG = "dagster/partition"
#: Dagster's tags on a run a sensor launched: its run key and the sensor's name.
RUN_KEY_TAG, SENSOR_NAME_TAG = "dagster/run_key", "dagster/sensor_name"


def metric_key(metric: str) -> str:
    return f"{METRIC_PREFIX}{metric}"


def champion_metric_key(metric: str) -> str:
    return f"{CHAMPION_PREFIX}{metric}"


def metrics_from_metadata(metadata: Mapping[str, Any], prefix: str = METRIC_PREFIX) -> dict[str, Any]:
    """The metrics recorded under `metric_<name>` keys (plain values or Dagster metadata)."""
    out = {}
    for key, value in metadata.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = getattr(value, "value", value)
    return out


def gate_check_name(metric: str) -> str:
    return f"{GATE_PREFIX}{metric}"


def is_gate_check(check_name: str) -> bool:
    return check_name.startswith(GATE_PREFIX)


def range_tags(start: str, end_inclusive: str) -> dict[str, str]:
    """Tags that make a run of a partitioned job a single-run backfill of [start, end]."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end_inclusive}


@dataclass(frozen=True)
class PipelineNames:
    """Asset keys, job, op, sensor and schedule names of one pipeline."""

    pipeline: str

    def key(self, layer: str) -> dg.AssetKey:
        if layer not in LAYERS:
            raise KeyError(f"unknown layer {layer!r}; layers are {list(LAYERS)}")
        return dg.AssetKey([self.pipeline, layer])

    @property
    def keys(self) -> dict[str, dg.AssetKey]:
        return {layer: self.key(layer) for layer in LAYERS}

    raw = property(lambda self: self.key("raw"))
    processed = property(lambda self: self.key("processed"))
    quarantine = property(lambda self: self.key("quarantine"))
    features = property(lambda self: self.key("features"))
    model = property(lambda self: self.key("model"))
    production_model = property(lambda self: self.key("production_model"))
    predictions = property(lambda self: self.key("predictions"))
    drift = property(lambda self: self.key("drift"))
    model_performance = property(lambda self: self.key("model_performance"))
    served_predictions = property(lambda self: self.key("served_predictions"))

    def lookup(self, name: str) -> dg.AssetKey:
        """The unpartitioned asset of lookup table `name`: `<pipeline>/lookups/<name>`."""
        return dg.AssetKey([self.pipeline, LOOKUPS, name])

    # ------------------------------------------------------------ ops (step keys)
    @property
    def processed_op(self) -> str:
        """The multi-asset that writes processed and quarantine."""
        return f"{self.pipeline}__processed"

    def op_for(self, layer: str) -> str:
        """The op (step) that materializes `layer`; config for an asset goes under this name."""
        if layer in ("processed", "quarantine"):
            return self.processed_op
        return "__".join(self.key(layer).path)

    @property
    def model_op(self) -> str:
        return self.op_for("model")

    @property
    def production_model_op(self) -> str:
        return self.op_for("production_model")

    # ------------------------------------------------------------ jobs
    @property
    def pipeline_job(self) -> str:
        """The whole graph for a range of days: what `ml-assets run` executes."""
        return f"{self.pipeline}_pipeline"

    @property
    def daily_job(self) -> str:
        """raw -> ... -> predictions and monitoring, without retraining."""
        return f"{self.pipeline}_daily"

    @property
    def retrain_job(self) -> str:
        """model -> production_model -> predictions and monitoring."""
        return f"{self.pipeline}_retrain"

    @property
    def serving_job(self) -> str:
        """served_predictions alone: collect a day of what the API served."""
        return f"{self.pipeline}_serving"

    @property
    def lifecycle_job(self) -> str:
        """production_model alone: promotion, rollback (what `ml-assets models` launches)."""
        return f"{self.pipeline}_lifecycle"

    # ------------------------------------------------------------ automation
    @property
    def drift_retrain_sensor(self) -> str:
        return f"{self.pipeline}_drift_retrain_sensor"

    @property
    def new_data_sensor(self) -> str:
        return f"{self.pipeline}_new_data_sensor"

    @property
    def run_failure_sensor(self) -> str:
        return f"{self.pipeline}_run_failure_sensor"

    @property
    def daily_schedule(self) -> str:
        return f"{self.pipeline}_daily_schedule"

    @property
    def retrain_schedule(self) -> str:
        return f"{self.pipeline}_retrain_schedule"

    @property
    def served_schedule(self) -> str:
        return f"{self.pipeline}_served_predictions_schedule"
