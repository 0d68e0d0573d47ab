"""Monitoring: daily `drift` (features against the production model's training rows, predictions
against its validation predictions, with Evidently's statistics) and daily `model_performance`
(realized metrics of the model that served a day, once its labels arrived).

Each check records its level (`OK`, `WARN`, `ERROR`) in its metadata and as its severity; the
retrain sensor reads that level and acts on `ERROR` only.
"""

import datetime as dt
import hashlib

import dagster as dg
import pandas as pd

from ml_assets.core.alerts import Alert
from ml_assets.core.drift import seeded_sample
from ml_assets.core.monitoring import (
    ERROR,
    OK,
    WARN,
    DayDrift,
    RunVerdict,
    comparable_features,
    day_drift,
    drift_verdicts,
    labelled_predictions,
    performance_level,
    performance_verdict,
    realized_performance,
    settings_of,
)
from ml_assets.core.registry import ModelVersion
from ml_assets.defs.io_manager import LazyTables, TableBatch
from ml_assets.defs.lifecycle import MODEL_ID, latest_recorded, production_version, run_tags
from ml_assets.defs.lineage import latest_versions
from ml_assets.defs.resources import AlertsResource, StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import metadata_value, partitions_of, table_output

SEVERITY = {ERROR: dg.AssetCheckSeverity.ERROR, WARN: dg.AssetCheckSeverity.WARN}


def verdict_result(verdict: RunVerdict, key: dg.AssetKey, extra: dict | None = None
                   ) -> dg.AssetCheckResult:
    meta = {**verdict.metadata(), **(extra or {})}
    return dg.AssetCheckResult(
        check_name=verdict.check, asset_key=key, passed=verdict.passed,
        severity=SEVERITY.get(verdict.level, dg.AssetCheckSeverity.WARN),
        metadata={k: metadata_value(v) for k, v in meta.items()})


def covered_days(days: list[str]) -> dict[str, str]:
    """The days a check result covers (the run's partitions): the retrain sensor ends a drift
    episode only on a result that reaches the episode's newest ERROR day."""
    return {"first_day": min(days), "last_day": max(days)} if days else {}


def reference_rows(version: ModelVersion, storage: StorageResource, max_rows: int, seed: int
                   ) -> pd.DataFrame:
    """The production model's training rows, re-read from the feature partition URIs its sidecar
    recorded (a seeded sample of `max_rows` when larger)."""
    refs = version.sidecar.get("lineage", {}).get("features", {})
    days = [d for d in version.sidecar.get("train_days", []) if d in refs]
    if not days:
        raise dg.Failure(f"{version.label} records no training partitions to compare against")
    uris = {d: refs[d]["uri"] for d in days}
    tables = LazyTables(uris, storage.client_for(*uris.values()))
    return seeded_sample(pd.concat([tables[d] for d in days], ignore_index=True), max_rows, seed)


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    d = cfg.drift

    @dg.asset(
        key=names.drift, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, group_name="monitoring", kinds={"evidently", "pandas"},
        ins={"features": dg.AssetIn(key=names.features),
             "predictions": dg.AssetIn(key=names.predictions)},
        deps=[names.production_model], owners=spec.owners, tags=spec.tags,
        description=(
            f"{cfg.name}: each day's features against the production model's training rows "
            f"({d.numeric_method} for numeric, {d.categorical_method} for categorical columns), "
            "and its predictions against the model's validation predictions. One row per column: "
            "method, score, threshold, verdict. Evidently's HTML report is saved beside it."),
        check_specs=spec.check_specs(names.drift, {
            "feature_drift": (False, f"Share of drifted watched features: WARN at >= "
                              f"{d.warn_share}, ERROR at >= {d.error_share}."),
            "prediction_drift": (False, "Predictions against the production model's validation "
                                 f"predictions; drift is {d.prediction_level.upper()}."),
        }),
    )
    def drift(context: dg.AssetExecutionContext, storage: StorageResource,
              alerts: AlertsResource, features, predictions):
        models = storage.models()
        production = production_version(context.instance, spec, models)
        reference = reference_rows(production, storage, d.reference_max_rows, d.seed)
        validation = models.load_validation(production)
        days: list[DayDrift] = []
        batch = TableBatch()
        meta: dict[str, dict] = {}
        run_days = partitions_of(context)
        for day in run_days:  # one day in memory at a time
            rows, preds = features[day], predictions[day]
            result = day_drift(day, reference, rows, cfg,
                               validation["prediction"] if validation is not None else None,
                               preds["prediction"] if len(preds) else None)
            days.append(result)
            batch.add(day, result.table())
            by = result.features.by_column()
            meta[day] = {
                "level": result.level, "drift_share": float(result.share),
                "drifted_columns": ", ".join(result.drifted_columns) or "none",
                "rows": result.rows, "production_version": production.version,
                **{f"score_{c}": float(by[c].score) for c in result.watched
                   if by[c].evaluated},
            }
            if result.prediction is not None:
                meta[day]["prediction_score"] = float(result.prediction.score)
        _reports(storage, reference, features, days, meta)
        yield table_output(context, storage, batch, names.drift,
                           metadata={"production_model_id": production.model_id,
                                     "production_version": production.version,
                                     "reference_rows": len(reference)},
                           partition_metadata=meta)
        feature, prediction = drift_verdicts(days, cfg)
        common = {"production_model_id": production.model_id,
                  "production_version": production.version, **covered_days(run_days)}
        yield verdict_result(feature, names.drift, common)
        yield verdict_result(prediction, names.drift, common)
        errors = [v for v in (feature, prediction) if v.level == ERROR]
        if errors:
            alerts.send(Alert(
                event="drift", pipeline=cfg.name, level="error",
                title=f"drift at ERROR on {', '.join(sorted({x for v in errors for x in v.error_days}))}",
                text="; ".join(f"{v.check}: observed {v.observed:.3f} ({v.threshold})"
                               for v in errors),
                fields={"production": production.label, "run_id": context.run_id,
                        "drifted_columns": feature.details.get("drifted_columns", "")}),
                log=context.log)

    def _reports(storage, reference, features, days: list[DayDrift], meta: dict) -> None:
        """Evidently's HTML report for the flagged days (or every day with `report: always`),
        the newest `report_max_per_run` of a run, saved beside the data."""
        if d.report == "never" or d.report_max_per_run == 0:
            return
        from ml_assets.core.drift import evidently_report_html

        wanted = [x for x in days if d.report == "always" or x.level != OK]
        chosen = sorted(wanted, key=lambda x: x.day)[-d.report_max_per_run:]
        for x in wanted:
            if x not in chosen:
                meta[x.day]["report"] = "skipped (drift.report_max_per_run)"
        store = storage.tables()
        for x in chosen:
            current = features[x.day]  # read again: a step holds one day at a time
            try:
                numeric, categorical, _ = comparable_features(cfg, reference)
                html = evidently_report_html(reference, current, numeric, categorical, settings_of(d),
                                             sample_rows=d.report_sample_rows, seed=d.seed)
            except ValueError as exc:  # no column with values on both sides
                meta[x.day]["report"] = f"not rendered: {exc}"
                continue
            data = html.encode()
            key = "/".join([*names.drift.path, x.day,
                            f"report-{hashlib.sha256(data).hexdigest()[:16]}.html"])
            meta[x.day]["report"] = dg.MetadataValue.path(store.put(key, data))

    @dg.asset(
        key=names.model_performance, partitions_def=spec.daily,
        backfill_policy=spec.backfill_policy, io_manager_key=TABLE_IO, group_name="monitoring",
        kinds={"pandas"},
        ins={"features": dg.AssetIn(key=names.features),
             "predictions": dg.AssetIn(key=names.predictions)},
        owners=spec.owners, tags=spec.tags,
        description=(
            f"{cfg.name}: once scored days' outcomes have arrived (their features carry the "
            f"label), the realized metrics over the trailing {cfg.monitoring.window_days} days of "
            "each model version that scored them, beside that model's validation metrics: "
            "concept drift that input drift cannot see."),
        check_specs=spec.check_specs(names.model_performance, {
            "model_performance": (False, "A gated metric falls more than "
                                  f"monitoring.performance_tolerance "
                                  f"({cfg.monitoring.performance_tolerance}) below the model's "
                                  "validation value: ERROR."),
        }),
    )
    def model_performance(context: dg.AssetExecutionContext, storage: StorageResource,
                          alerts: AlertsResource, features, predictions):
        models = storage.models()
        sidecars: dict[str, dict] = {}
        labelled: dict[str, pd.DataFrame] = {}  # day -> model_id, label, prediction (small)
        run_days = partitions_of(context)
        window = cfg.monitoring.window_days
        needed = sorted({(dt.date.fromisoformat(day) - dt.timedelta(days=k)).isoformat()
                         for day in run_days for k in range(window)})
        needed = [x for x in needed if spec.in_partitions(dt.date.fromisoformat(x))]
        feature_refs = latest_versions(context.instance, names.features, needed)
        prediction_refs = latest_versions(context.instance, names.predictions, needed)
        available = [x for x in needed if x in feature_refs and x in prediction_refs]
        uris = [r.uri for r in [*feature_refs.values(), *prediction_refs.values()]]
        client = storage.client_for(*uris)
        feature_tables = LazyTables({x: feature_refs[x].uri for x in available}, client)
        prediction_tables = LazyTables({x: prediction_refs[x].uri for x in available}, client)
        for day in available:
            try:
                labelled[day] = labelled_predictions(day, feature_tables[day],
                                                     prediction_tables[day], cfg)
            except ValueError as exc:
                raise dg.Failure(str(exc)) from None
            for model_id in labelled[day]["model_id"].unique():
                if model_id not in sidecars:
                    sidecars[model_id] = models.get(cfg.name, str(model_id)).sidecar
        tables: dict[str, pd.DataFrame] = {}
        batch = TableBatch()
        meta: dict[str, dict] = {}
        for day in run_days:
            first = (dt.date.fromisoformat(day) - dt.timedelta(days=window - 1)).isoformat()
            parts = [labelled[x] for x in available if first <= x <= day]
            rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
                columns=["day", "model_id", "label", "prediction"])
            table = realized_performance(day, rows, sidecars, cfg)
            tables[day] = table
            batch.add(day, table)
            meta[day] = {"level": performance_level(table), "window_rows": len(rows)}
            for r in table.itertuples():
                if r.judged:
                    meta[day][f"realized_{r.metric}"] = float(r.realized)
                    meta[day][f"drop_{r.metric}"] = float(r.drop)
        yield table_output(context, storage, batch, names.model_performance,
                           partition_metadata=meta)
        verdict = performance_verdict(tables, cfg)
        recorded = latest_recorded(context.instance, names.production_model) or {}
        yield verdict_result(verdict, names.model_performance,
                             {"production_model_id": str(recorded.get(MODEL_ID, "")),
                              **covered_days(run_days)})
        if verdict.level == ERROR:
            alerts.send(Alert(event="performance", pipeline=cfg.name, level="error",
                              title=f"realized performance below validation on "
                                    f"{', '.join(verdict.error_days)}",
                              text=str(verdict.details.get("worst", "")),
                              fields={"run_id": context.run_id,
                                      "trigger": run_tags(context).get("ml_assets/trigger", "")}),
                        log=context.log)

    return [drift, model_performance]
