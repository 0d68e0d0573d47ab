"""The model: a LightGBM candidate trained on the trailing window of features, registered
write-once in the model store with its gate verdicts and semantic version, and made the
`candidate` alias. Whether it serves is `production_model`'s decision."""


import datetime as dt

import dagster as dg
from pydantic import Field

from ml_assets.core import quality
from ml_assets.core.alerts import Alert
from ml_assets.core.gates import bounds_text, evaluate_gates
from ml_assets.core.lifecycle import feature_contract, set_alias_change
from ml_assets.core.lookups import lookup_lineage, mixed_lookups
from ml_assets.core.manifest import build_manifest
from ml_assets.core.registry import AuditEntry
from ml_assets.core.training import TrainingError, train
from ml_assets.defs import tracking
from ml_assets.defs.io_manager import LazyTables
from ml_assets.defs.lifecycle import actor_of, trigger_of
from ml_assets.defs.lineage import current_version, latest_versions, lookup_versions_by_day
from ml_assets.defs.names import gate_check_name, metric_key
from ml_assets.defs.resources import AlertsResource, StorageResource
from ml_assets.defs.spec import PipelineSpec, window
from ml_assets.defs.tables import metadata_value


class ModelConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description=(
            "Last day (YYYY-MM-DD) of the training window. Default: the newest materialized "
            "features partition."
        ),
    )


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    gate_specs = {
        gate_check_name(metric): (True, f"Validation {metric} {bounds_text(t.min, t.max)} (blocking).")
        for metric, t in cfg.gates.items()
    }

    @dg.asset(
        key=names.model, deps=[names.features], group_name="model", kinds={"lightgbm"},
        owners=spec.owners, tags=spec.tags, pool=spec.training_pool,
        description=(f"{cfg.name}: LightGBM ({cfg.target.task}) on the trailing "
                     f"{cfg.training.window_days} days of features, validated on the last "
                     f"{cfg.training.validation_days}. Each materialization is a new model."),
        check_specs=spec.check_specs(names.model, gate_specs),
    )
    def model(context: dg.AssetExecutionContext, config: ModelConfig, storage: StorageResource,
              alerts: AlertsResource):
        materialized = sorted(context.instance.get_materialized_partitions(names.features))
        if config.as_of is not None:
            try:
                as_of = dt.date.fromisoformat(config.as_of)
            except ValueError:
                raise dg.Failure(f"as_of: expected a date YYYY-MM-DD, found {config.as_of!r}") from None
        elif materialized:
            as_of = dt.date.fromisoformat(materialized[-1])
        else:
            raise dg.Failure(f"{names.features.to_user_string()} has no materialized partition to train on")
        days = window(as_of, cfg.training.window_days)
        refs = latest_versions(context.instance, names.features, days)
        missing = [d for d in days if d not in refs]
        # of those, the days that are partitions (a window reaching before the pipeline's
        # first day lacks days that cannot be backfilled: not worth a warning)
        first, end = cfg.partitions.start.isoformat(), cfg.partitions.end.isoformat()
        gaps = [d for d in missing if first <= d < end]
        empty = [d for d, r in sorted(refs.items()) if r.rows == 0]
        if gaps or empty:  # trained anyway: said in the log, the metadata and the summary
            context.log.warning(
                f"training window {days[0]}..{days[-1]}: {len(gaps)} of {len(days)} day(s) "
                f"never materialized {gaps or ''}, {len(empty)} empty {empty or ''}")
        # which version of each lookup table the window's features were built from
        lookup_keys = {name: names.lookup(name) for name in cfg.lookups}
        lookups = lookup_lineage(
            lookup_versions_by_day(refs, lookup_keys),
            {name: current_version(context.instance, key) for name, key in lookup_keys.items()})
        mixed = mixed_lookups(lookups)
        for line in mixed.values():  # trained anyway: said in the log, the metadata and the summary
            context.log.warning(
                f"training window {days[0]}..{days[-1]}: its features were built from more than "
                f"one version of a lookup table, or not from its current one: {line}; "
                "re-materialize the features of the days not on its current version to train "
                "on one version")
        if len(refs) <= cfg.training.validation_days:
            raise dg.Failure(
                f"training window {days[0]}..{days[-1]} has {len(refs)} materialized features "
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
            "lookups": lookups,
            "run_id": context.run_id,
        }
        models = storage.models()
        version, created = models.register(
            cfg.name, trained, gates, lineage, contract=feature_contract(cfg),
            manifest=build_manifest(cfg, seed=int(trained.params.get("seed", 0))))
        actor = actor_of(context)
        models.move_aliases(cfg.name, set_alias_change("candidate", version, {
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": context.run_id, "actor": actor}))
        if created:
            models.append_audit(cfg.name, AuditEntry(
                action="register", actor=actor, run_id=context.run_id, to_version=version.version,
                to_model_id=version.model_id, metrics=trained.metrics,
                reason=(f"trained on {trained.train_days[0]}..{trained.validation_days[-1]} "
                        f"(as of {as_of}); gates {'passed' if version.gate_passed else 'failed'}"),
                details={"trigger": trigger_of(context), "gates": [g.to_dict() for g in gates]}))
        if not version.gate_passed:
            # Its gate checks block production_model in this run, so the rejection is recorded
            # here: an expected outcome, whatever the run's final status.
            reason = f"{version.label} failed its gates: {version.gate_summary()}"
            production = models.aliases(cfg.name).aliases.get("production") or {}
            models.append_audit(cfg.name, AuditEntry(
                action="reject", actor=actor, run_id=context.run_id, reason=reason,
                from_version=production.get("version"), from_model_id=production.get("model_id"),
                to_version=version.version, to_model_id=version.model_id, metrics=trained.metrics,
                details={"trigger": trigger_of(context), "stage": "gates"}))
            alerts.send(Alert(event="reject", pipeline=cfg.name, level="warning",
                              title=f"challenger {version.label} failed its gates; production "
                                    f"stays {production.get('version', 'unset')}",
                              text=reason, fields={"run_id": context.run_id, "actor": actor}),
                        log=context.log)
        metadata = {
            "model_id": version.model_id,
            "model_version": version.version,
            "newly_registered": created,
            "gate_passed": version.gate_passed,
            "model_uri": dg.MetadataValue.path(version.model_uri),
            "sidecar_uri": dg.MetadataValue.path(version.sidecar_uri),
            "as_of": as_of.isoformat(),
            "train_days": f"{trained.train_days[0]}..{trained.train_days[-1]}",
            "validation_days": f"{trained.validation_days[0]}..{trained.validation_days[-1]}",
            "train_rows": trained.train_rows,
            "validation_rows": trained.validation_rows,
            "missing_partitions": len(missing),
            "window_days_missing": ", ".join(gaps) or "none",
            "window_days_empty": ", ".join(empty) or "none",
            "lookup_versions": dg.MetadataValue.json(lookups),
            "lookup_versions_mixed": "\n".join(mixed.values()) or "none",
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
        metadata.update({metric_key(m): float(v) for m, v in trained.metrics.items()})
        metadata.update(tracking.log_training(context, cfg.name, version, trained, lineage, models))
        results = [
            dg.AssetCheckResult(
                check_name=gate_check_name(g.metric), asset_key=names.model, passed=g.passed,
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

    return [model]
