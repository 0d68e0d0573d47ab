"""One pipeline config -> its definitions, assembled from one module per stage:

    lookups      <name>/lookups/<table>: the lookup tables the transforms join
    ingest       raw, processed + quarantine
    features     features
    model        model (a candidate per materialization)
    lifecycle    production_model (promotion, rollback)
    predictions  predictions
    monitoring   drift, model_performance
    automation   sensors and schedules

`PipelineSpec` (config, names, partitions, shared policies) is what each stage receives;
`PipelineNames` owns every name, so nothing here builds a name from a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ml_assets.config import PipelineConfig
from ml_assets.defs import (
    automation,
    features,
    ingest,
    lifecycle,
    lookups,
    model,
    monitoring,
    predictions,
    serving,
)
from ml_assets.defs.names import TAG_TRAINING, PipelineNames
from ml_assets.defs.spec import PipelineSpec


@dataclass
class PipelineDefs:
    """Everything one pipeline contributes to the code location."""

    spec: PipelineSpec
    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    checks: list[dg.AssetChecksDefinition] = field(default_factory=list)
    jobs: list = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)

    @property
    def names(self) -> PipelineNames:
        return self.spec.names

    def asset(self, layer: str) -> dg.AssetsDefinition:
        """The AssetsDefinition that materializes `layer`."""
        key = self.names.key(layer)
        for assets_def in self.assets:
            if key in assets_def.keys:
                return assets_def
        raise KeyError(f"pipeline {self.names.pipeline!r} has no asset for layer {layer!r}")


def build_pipeline(cfg: PipelineConfig) -> PipelineDefs:
    spec = PipelineSpec(cfg)
    names = spec.names
    assets = [*lookups.build(spec), *ingest.build(spec), *features.build(spec), *model.build(spec),
              *lifecycle.build(spec), *predictions.build(spec), *monitoring.build(spec)]
    tables = [names.raw, names.processed, names.features, names.predictions, names.drift,
              names.model_performance]
    jobs = build_jobs(spec, [k for a in assets for k in a.keys])
    sensors, schedules = automation.build(spec, jobs)
    assets += serving.build(spec)  # served_predictions: after the jobs, so no job runs it
    return PipelineDefs(
        spec=spec,
        assets=assets,
        checks=list(dg.build_column_schema_change_checks(assets=tables)),
        jobs=list(jobs.values()),
        sensors=sensors,
        schedules=schedules,
    )


def build_jobs(spec: PipelineSpec, keys: list[dg.AssetKey]) -> dict[str, Any]:
    """The pipeline's jobs: the whole graph, the daily batch, a retrain, and promotion alone."""
    names, cfg = spec.names, spec.cfg
    daily = [*(names.lookup(n) for n in cfg.lookups), names.raw, names.processed,
             names.quarantine, names.features, names.predictions, names.drift,
             names.model_performance]
    retrain = [names.model, names.production_model, names.predictions, names.drift,
               names.model_performance]
    return {
        "pipeline": dg.define_asset_job(
            name=names.pipeline_job, selection=dg.AssetSelection.assets(*keys),
            partitions_def=spec.daily, tags={TAG_TRAINING: cfg.name},
            description=f"{cfg.name}: the whole graph for a range of days (ml-assets run)."),
        "daily": dg.define_asset_job(
            name=names.daily_job, selection=dg.AssetSelection.assets(*daily),
            partitions_def=spec.daily,
            description=f"{cfg.name}: ingest, features, predictions and monitoring; no training."),
        "retrain": dg.define_asset_job(
            name=names.retrain_job, selection=dg.AssetSelection.assets(*retrain),
            partitions_def=spec.daily, tags={TAG_TRAINING: cfg.name},
            description=(f"{cfg.name}: train a challenger (as_of), decide production, re-score "
                         "and re-monitor the days in range.")),
        "serving": dg.define_asset_job(
            name=names.serving_job, selection=dg.AssetSelection.assets(names.served_predictions),
            partitions_def=spec.daily,
            description=f"{cfg.name}: collect a day of the predictions the API served."),
        "lifecycle": dg.define_asset_job(
            name=names.lifecycle_job, selection=dg.AssetSelection.assets(names.production_model),
            description=f"{cfg.name}: promote or roll back (production_model alone)."),
    }
