"""One pipeline config -> one asset graph: raw -> processed (+quarantine) -> features -> model
-> predictions, with checks on every layer. Assets are thin: the work is in `ml_assets.core`."""


import datetime as dt
import os

import dagster as dg
from pydantic import Field

from ml_assets.config import PipelineConfig
from ml_assets.core import quality
from ml_assets.core.contract import clean, expected_columns
from ml_assets.core.features import build_features, key_columns
from ml_assets.core.gates import bounds_text, evaluate_gates
from ml_assets.core.pii import PiiKeyMissing, apply_pii
from ml_assets.core.registry import NoApprovedModel
from ml_assets.core.scoring import LoadedModel, score
from ml_assets.core.sources import SourceError, read_source
from ml_assets.core.training import TrainingError, train
from ml_assets.defs.io_manager import LazyTables, TableBatch
from ml_assets.defs.lineage import latest_versions
from ml_assets.defs.policies import backfill_policy, training_pool
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.tables import check_result, metadata_value, partitions_of, table_output

IO = "table_io_manager"


class ModelConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description=(
            "Last day (YYYY-MM-DD) of the training window. Default: the newest materialized "
            "features partition."
        ),
    )


def keys_for(name: str) -> dict[str, dg.AssetKey]:
    return {layer: dg.AssetKey([name, layer]) for layer in
            ("raw", "processed", "quarantine", "features", "model", "predictions")}


def _checks(key: dg.AssetKey, specs: dict[str, tuple[bool, str]]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=desc)
            for name, (blocking, desc) in specs.items()]


def _window(as_of: dt.date, days: int) -> list[str]:
    return [(as_of - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def build_pipeline(cfg: PipelineConfig) -> dict:
    """Assets, checks and a job for one pipeline config."""
    k = keys_for(cfg.name)
    daily = dg.DailyPartitionsDefinition(
        start_date=cfg.partitions.start.isoformat(), end_date=cfg.partitions.end.isoformat()
    )
    single_run = backfill_policy(cfg)
    owners = list(cfg.owners)
    tags = {"pipeline": cfg.name}
    nullable_columns = [c for c, s in cfg.columns.items() if s.nullable and c in expected_columns(cfg)]

    # ---------------------------------------------------------------- raw
    @dg.asset(
        key=k["raw"], partitions_def=daily, backfill_policy=single_run, io_manager_key=IO,
        group_name="raw", kinds={"pandas", "parquet"}, owners=owners, tags=tags,
        description=(f"{cfg.name}: one day of the source as received, PII treated "
                     f"({dict(cfg.pii) or 'none'}), stored immutably (content-addressed)."),
        check_specs=_checks(k["raw"], {
            "required_columns": (True, "Every column of the contract is present (blocking)."),
            "row_count": (False, "Rows per day within checks.min/max_rows_per_day."),
        }),
    )
    def raw(context: dg.AssetExecutionContext, storage: StorageResource):
        days = partitions_of(context)
        start = dt.date.fromisoformat(days[0])
        end = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
        uri = getattr(cfg.source, "uri", "")
        key = os.environ.get(cfg.pii_key_env) if cfg.pii else None
        batch = TableBatch()
        checks = [quality.columns_present_check(cfg),
                  quality.row_count_check(cfg.checks.min_rows_per_day, cfg.checks.max_rows_per_day)]
        try:
            source = read_source(cfg, start, end, storage.client_for(uri))
            for day in days:  # one day in memory at a time
                frame = apply_pii(source.frames[day], cfg.pii, key)
                batch.add(day, frame)
                for check in checks:
                    check.update(day, frame)
        except (SourceError, PiiKeyMissing) as exc:
            raise dg.Failure(description=str(exc)) from None
        yield table_output(
            context, storage, batch, k["raw"],
            metadata={"source_files": len(source.files)},
            partition_metadata={
                d: {"source_files": ", ".join(source.files_by_day.get(d, []))[:1000]} for d in days},
        )
        for check in checks:
            yield check_result(check.result(), k["raw"])

    # ---------------------------------------------------------------- processed + quarantine
    @dg.multi_asset(
        name=f"{cfg.name}__processed",
        outs={
            "processed": dg.AssetOut(
                key=k["processed"], io_manager_key=IO, group_name="processed",
                kinds={"pandas", "parquet"}, owners=owners, tags=tags,
                description=f"{cfg.name}: rows that meet the contract, parsed to their dtypes."),
            "quarantine": dg.AssetOut(
                key=k["quarantine"], io_manager_key=IO, group_name="processed",
                kinds={"pandas", "parquet"}, owners=owners, tags=tags,
                description=f"{cfg.name}: rows that broke the contract, with a reason each."),
        },
        ins={"raw": dg.AssetIn(key=k["raw"])},
        partitions_def=daily, backfill_policy=single_run,
        check_specs=_checks(k["processed"], {
            "schema": (True, "Columns and dtypes match the contract (blocking)."),
            "primary_key_unique": (True, "No two rows share a primary key (blocking)."),
            "null_rate": (False, "Null rate of each nullable column <= checks.max_null_rate."),
            "value_ranges": (False, "No value outside min/max/allowed."),
            "quarantine_rate": (False, "Quarantined share of rows <= checks.max_quarantine_rate."),
        }),
    )
    def processed(context: dg.AssetExecutionContext, storage: StorageResource, raw):
        good, bad = TableBatch(), TableBatch()
        checks = [quality.schema_check(cfg), quality.key_unique_check(cfg.primary_key),
                  quality.null_rate_check(nullable_columns, cfg.checks.max_null_rate),
                  quality.value_range_check(cfg)]
        rate = quality.quarantine_rate_check(cfg.checks.max_quarantine_rate)
        extra: set[str] = set()
        for day in partitions_of(context):  # one day in memory at a time
            try:
                cleaned = clean(raw[day], cfg, day)
            except ValueError as exc:
                raise dg.Failure(description=str(exc)) from None
            good.add(day, cleaned.processed)
            bad.add(day, cleaned.quarantine)
            extra.update(cleaned.extra_columns)
            for check in checks:
                check.update(day, cleaned.processed)
            rate.update(day, cleaned.processed, cleaned.quarantine)
        yield table_output(context, storage, good, k["processed"], output_name="processed",
                           metadata={"columns_not_in_contract": sorted(extra) or "none"},
                           partition_metadata={d: {"quarantined_rows": p.rows}
                                               for d, p in bad.parts.items()})
        yield table_output(context, storage, bad, k["quarantine"], output_name="quarantine",
                           metadata={"quarantined_rows": sum(p.rows for p in bad.parts.values())})
        for check in [*checks, rate]:
            yield check_result(check.result(), k["processed"])

    # ---------------------------------------------------------------- features
    @dg.asset(
        key=k["features"], partitions_def=daily, backfill_policy=single_run, io_manager_key=IO,
        ins={"processed": dg.AssetIn(key=k["processed"])},
        group_name="features", kinds={"pandas", "parquet"}, owners=owners, tags=tags,
        description=(f"{cfg.name}: keys, features {cfg.feature_columns} and the label; transforms "
                     f"{cfg.features.transforms}."),
        check_specs=_checks(k["features"], {
            "no_leakage": (True, "No forbidden (post-prediction-time) column is a feature (blocking)."),
            "feature_columns": (True, "Every configured feature and the label present (blocking)."),
            "feature_null_rate": (False, "Null rate per feature <= checks.max_null_rate (warn)."),
        }),
    )
    def features(context: dg.AssetExecutionContext, storage: StorageResource, processed):
        batch = TableBatch()
        checks = [quality.leakage_check(cfg), quality.feature_columns_check(cfg),
                  quality.null_rate_check(cfg.feature_columns, cfg.checks.max_null_rate,
                                          name="feature_null_rate")]
        for day in partitions_of(context):  # one day in memory at a time
            try:
                frame = build_features(processed[day], cfg)
            except ValueError as exc:
                raise dg.Failure(description=str(exc)) from None
            batch.add(day, frame)
            for check in checks:
                check.update(day, frame)
        yield table_output(context, storage, batch, k["features"])
        for check in checks:
            yield check_result(check.result(), k["features"])

    # ---------------------------------------------------------------- model
    gate_specs = {
        f"gate_{metric}": (True, f"Validation {metric} {bounds_text(t.min, t.max)} (blocking).")
        for metric, t in cfg.gates.items()
    }

    @dg.asset(
        key=k["model"], deps=[k["features"]], group_name="model", kinds={"lightgbm"},
        owners=owners, tags=tags,
        pool=training_pool(cfg),
        description=(f"{cfg.name}: LightGBM ({cfg.target.task}) on the trailing "
                     f"{cfg.training.window_days} days of features, validated on the last "
                     f"{cfg.training.validation_days}. Each materialization is a new model."),
        check_specs=_checks(k["model"], gate_specs),
    )
    def model(context: dg.AssetExecutionContext, config: ModelConfig, storage: StorageResource):
        materialized = sorted(context.instance.get_materialized_partitions(k["features"]))
        if config.as_of is not None:
            try:
                as_of = dt.date.fromisoformat(config.as_of)
            except ValueError:
                raise dg.Failure(f"as_of: expected a date YYYY-MM-DD, found {config.as_of!r}") from None
        elif materialized:
            as_of = dt.date.fromisoformat(materialized[-1])
        else:
            raise dg.Failure(f"{k['features'].to_user_string()} has no materialized partition to train on")
        window = _window(as_of, cfg.training.window_days)
        refs = latest_versions(context.instance, k["features"], window)
        missing = [d for d in window if d not in refs]
        if len(refs) <= cfg.training.validation_days:
            raise dg.Failure(
                f"training window {window[0]}..{window[-1]} has {len(refs)} materialized features "
                f"partition(s); more than validation_days={cfg.training.validation_days} needed. "
                "Backfill the features first."
            )
        client = storage.client_for(*(r.uri for r in refs.values()))
        frames = dict(LazyTables({d: refs[d].uri for d in sorted(refs)}, client))
        leaks = quality.no_leakage(frames, cfg)
        if not leaks.passed:
            raise dg.Failure(f"refusing to train: forbidden column(s) {leaks.observed} in features")
        try:
            trained = train(frames, cfg)
        except TrainingError as exc:
            raise dg.Failure(description=str(exc)) from None
        gates = evaluate_gates(trained.metrics, cfg.gates)
        lineage = {
            "as_of": as_of.isoformat(),
            "features": {d: {"uri": r.uri, "content_hash": r.content_hash,
                             "data_version": r.data_version} for d, r in refs.items()},
            "missing_partitions": missing,
            "run_id": context.run_id,
        }
        version = storage.models().register(cfg.name, trained, gates, lineage)
        metadata = {
            "model_id": version.model_id,
            "gate_passed": version.gate_passed,
            "model_uri": dg.MetadataValue.path(version.model_uri),
            "sidecar_uri": dg.MetadataValue.path(version.sidecar_uri),
            "as_of": as_of.isoformat(),
            "train_days": f"{trained.train_days[0]}..{trained.train_days[-1]}",
            "validation_days": f"{trained.validation_days[0]}..{trained.validation_days[-1]}",
            "train_rows": trained.train_rows,
            "validation_rows": trained.validation_rows,
            "missing_partitions": len(missing),
            "params": dg.MetadataValue.json(trained.params),
            "seed": int(trained.params.get("seed", 0)),
            "feature_partitions": dg.MetadataValue.json(lineage["features"]),
            "feature_importance": dg.MetadataValue.table(
                records=[dg.TableRecord({"feature": r["feature"], "gain": float(r["gain"]),
                                         "splits": int(r["splits"])})
                         for r in trained.importance.to_dict("records")],
                schema=dg.TableSchema(columns=[dg.TableColumn("feature", "string"),
                                               dg.TableColumn("gain", "float"),
                                               dg.TableColumn("splits", "int")])),
        }
        metadata.update({f"metric_{m}": float(v) for m, v in trained.metrics.items()})
        results = [
            dg.AssetCheckResult(
                check_name=f"gate_{g.metric}", asset_key=k["model"], passed=g.passed,
                metadata={"observed": float(g.observed),
                          "threshold": bounds_text(g.min, g.max),
                          "model_id": version.model_id},
            )
            for g in gates
        ]
        return dg.MaterializeResult(
            metadata={n: metadata_value(v) for n, v in metadata.items()},
            data_version=dg.DataVersion(version.model_id),
            check_results=results,
        )

    # ---------------------------------------------------------------- predictions
    sanity = {
        "one_prediction_per_row": (True, "As many predictions as feature rows (blocking)."),
        "no_missing_predictions": (True, "No NaN prediction (blocking)."),
    }
    if cfg.target.task == "binary":
        sanity["probabilities_in_unit_interval"] = (True, "Every probability in [0, 1] (blocking).")

    @dg.asset(
        key=k["predictions"], partitions_def=daily, backfill_policy=single_run, io_manager_key=IO,
        ins={"features": dg.AssetIn(key=k["features"])}, deps=[k["model"]],
        group_name="predictions", kinds={"pandas", "parquet"}, owners=owners, tags=tags,
        description=(f"{cfg.name}: each day's feature rows scored by the newest model that passed "
                     "its gate; the model id is on every row."),
        check_specs=_checks(k["predictions"], sanity),
    )
    def predictions(context: dg.AssetExecutionContext, storage: StorageResource, features):
        models = storage.models()
        try:
            version = models.latest_passed(cfg.name)
        except NoApprovedModel as exc:
            raise dg.Failure(description=str(exc)) from None
        loaded = LoadedModel.from_text(version.model_id, models.load_text(version), version.sidecar)
        keys = key_columns(cfg)
        batch = TableBatch()
        sanity = quality.predictions_check(cfg.target.task)
        for day in partitions_of(context):  # one day in memory at a time
            rows = features[day]
            scored = score(loaded, rows, keys)
            batch.add(day, scored)
            sanity.update(day, len(rows), scored)
        yield table_output(context, storage, batch, k["predictions"],
                           metadata={"model_id": version.model_id,
                                     "model_created_at": version.created_at})
        for outcome in sanity.result():
            yield check_result(outcome, k["predictions"])

    job = dg.define_asset_job(
        name=f"{cfg.name}_pipeline",
        selection=dg.AssetSelection.assets(*k.values()),
        partitions_def=daily,
        description=f"{cfg.name}: raw -> predictions for a range of days.",
    )
    tables = [k["raw"], k["processed"], k["features"], k["predictions"]]
    return {
        "assets": [raw, processed, features, model, predictions],
        "checks": list(dg.build_column_schema_change_checks(assets=tables)),
        "jobs": [job],
        "keys": k,
        "partitions_def": daily,
    }
