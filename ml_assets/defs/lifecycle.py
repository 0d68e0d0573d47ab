"""The model lifecycle as an asset: `<name>/production_model` decides which model serves.

Each materialization is one decision, recorded three ways: the `production` alias in the model
store (moved with compare-and-swap), an audit-log entry, and this asset's metadata (both models'
metrics on the same rows, the verdict and the reason). Rollback and manual promotion are the same
asset with config (`rollback: true`, `version: X`), so they share the audit path and show in the
UI as materializations with lineage.
"""

import datetime as dt
import getpass

import dagster as dg
from pydantic import Field

from ml_assets.core.alerts import Alert
from ml_assets.core.lifecycle import (
    Decision,
    can_score,
    decide,
    metrics_on_rows,
    promote_change,
    rollback_change,
)
from ml_assets.core.registry import (
    AliasConflict,
    AuditEntry,
    ModelStore,
    ModelVersion,
    UnknownModel,
)
from ml_assets.core.scoring import LoadedModel
from ml_assets.defs import tracking
from ml_assets.defs.io_manager import LazyTables
from ml_assets.defs.names import (
    TAG_ACTOR,
    TAG_TRIGGER,
    champion_metric_key,
    metric_key,
)
from ml_assets.defs.resources import AlertsResource, StorageResource
from ml_assets.defs.spec import PipelineSpec
from ml_assets.defs.tables import metadata_value

MODEL_ID = "model_id"
MODEL_VERSION = "model_version"


class ProductionModelConfig(dg.Config):
    rollback: bool = Field(
        default=False,
        description="Move production back to the `previous` alias (or to `version` when given).")
    version: str | None = Field(
        default=None,
        description=("Make this model production: a semantic version (v1.2.0), an alias or a "
                     "model id. Without `rollback` this is a manual promotion."))
    force: bool = Field(
        default=False, description="Allow a model that failed its gates (recorded in the audit).")
    reason: str | None = Field(default=None, description="Why; written to the audit log.")


# ---------------------------------------------------------------- who and why
def run_tags(context) -> dict[str, str]:
    """The run's tags; none when the asset is invoked directly (a test, no run)."""
    try:
        return dict(context.run.tags)
    except dg.DagsterError:  # direct invocation has no run
        return {}


def actor_of(context) -> str:
    """Who acted: the `ml_assets/actor` tag, else the sensor or schedule that launched the run,
    else the Dagster UI/API."""
    tags = run_tags(context)
    if tags.get(TAG_ACTOR):
        return tags[TAG_ACTOR]
    if tags.get("dagster/sensor_name"):
        return f"sensor:{tags['dagster/sensor_name']}"
    if tags.get("dagster/schedule_name"):
        return f"schedule:{tags['dagster/schedule_name']}"
    if tags.get("dagster/backfill"):
        return f"backfill:{tags['dagster/backfill']}"
    return "dagster:ui-or-api"


def trigger_of(context) -> str:
    return run_tags(context).get(TAG_TRIGGER, "manual")


def cli_actor() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user:unknown"


def latest_recorded(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict | None:
    """The metadata of `key`'s newest materialization, as plain values, or None."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def production_version(instance: dg.DagsterInstance, spec: PipelineSpec, models: ModelStore
                       ) -> ModelVersion:
    """The model the newest `production_model` materialization recorded (what predictions and
    monitoring use), or a Failure saying what to do."""
    recorded = latest_recorded(instance, spec.names.production_model)
    if not recorded or not recorded.get(MODEL_ID):
        raise dg.Failure(
            f"pipeline {spec.name!r} has no production model yet: materialize "
            f"{spec.names.production_model.to_user_string()} (the first model whose gates pass "
            f"becomes production). Trained so far: "
            f"{', '.join(v.label + (' passed' if v.gate_passed else ' failed') for v in models.versions(spec.name)[-5:]) or 'none'}")
    try:
        return models.get(spec.name, str(recorded[MODEL_ID]))
    except UnknownModel as exc:
        raise dg.Failure(f"the production model recorded by {spec.names.production_model.to_user_string()} "
                         f"is gone from the model store: {exc}") from None


def validation_rows(version: ModelVersion, storage: StorageResource):
    """The challenger's validation rows, re-read from the feature partition URIs it recorded."""
    import pandas as pd

    refs = version.sidecar.get("lineage", {}).get("features", {})
    days = [d for d in version.sidecar.get("validation_days", []) if d in refs]
    uris = {d: refs[d]["uri"] for d in days}
    tables = LazyTables(uris, storage.client_for(*uris.values()))
    return pd.concat([tables[d] for d in days], ignore_index=True) if days else pd.DataFrame()


def challenge(cfg, models: ModelStore, storage: StorageResource, challenger: ModelVersion,
              champion: ModelVersion | None) -> Decision:
    """The promotion verdict, with the champion scored on exactly the challenger's validation
    partitions (and the challenger re-scored on them, so both metrics come from the same rows)."""
    mine = theirs = problem = None
    if champion is not None and champion.model_id != challenger.model_id and challenger.gate_passed:
        rows = validation_rows(challenger, storage)
        champion_model = load(models, champion)
        problem = can_score(champion_model, rows) if len(rows) else "no validation rows recorded"
        if problem is None:
            theirs = metrics_on_rows(champion_model, rows, cfg.target.task)
            mine = metrics_on_rows(load(models, challenger), rows, cfg.target.task)
    return decide(challenger, champion, cfg, mine, theirs, problem)


def load(models: ModelStore, version: ModelVersion) -> LoadedModel:
    return LoadedModel.from_text(version.model_id, models.load_text(version), version.sidecar,
                                 version=version.version)


# ---------------------------------------------------------------- the asset
def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names

    @dg.asset(
        key=names.production_model, deps=[names.model], group_name="model", kinds={"lightgbm"},
        owners=spec.owners, tags=spec.tags,
        description=(
            f"{cfg.name}: the model that serves. Each materialization compares the newest "
            "candidate (challenger) with production (champion) on the challenger's validation "
            "rows and promotes it only if its gates passed and it is not worse by more than "
            f"promotion.tolerance ({cfg.promotion.tolerance}). Config `rollback: true` or "
            "`version: vX.Y.Z` rolls back or promotes by hand, through the same audit log."),
    )
    def production_model(context: dg.AssetExecutionContext, config: ProductionModelConfig,
                         storage: StorageResource, alerts: AlertsResource) -> dg.MaterializeResult:
        models = storage.models()
        actor = actor_of(context)
        state = models.aliases(cfg.name)
        champion_id = state.model_id("production")
        champion = models.get(cfg.name, champion_id) if champion_id else None
        moved = {"since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                 "run_id": context.run_id, "actor": actor}

        if config.rollback or config.version:
            return _synced(context, models, _manual(context, config, models, alerts, champion,
                                                    moved, actor))

        recorded = latest_recorded(context.instance, names.model)
        if not recorded or not recorded.get(MODEL_ID):
            raise dg.Failure(f"no candidate to decide on: materialize {names.model.to_user_string()} first")
        try:
            challenger = models.get(cfg.name, str(recorded[MODEL_ID]))
        except UnknownModel as exc:
            raise dg.Failure(str(exc)) from None

        decision = challenge(cfg, models, storage, challenger, champion)

        if decision.promoted:
            try:
                change = promote_change(challenger, champion_id, moved)
                models.move_aliases(cfg.name, change)
                _canary_ended(context, models, change, challenger, actor)
            except AliasConflict as exc:
                decision = Decision("reject", f"lost a concurrent promotion: {exc}", challenger,
                                    champion, decision.comparisons, decision.challenger_metrics,
                                    decision.champion_metrics)
        if decision.action != "keep":
            models.append_audit(cfg.name, AuditEntry(
                action=decision.action, actor=actor, run_id=context.run_id, reason=decision.reason,
                from_version=champion.version if champion else None,
                from_model_id=champion.model_id if champion else None,
                to_version=challenger.version, to_model_id=challenger.model_id,
                metrics={"challenger": decision.challenger_metrics,
                         "champion": decision.champion_metrics},
                details={"trigger": trigger_of(context),
                         "comparisons": decision.comparison_records()}))
            alerts.send(Alert(
                event=decision.action, pipeline=cfg.name,
                level="info" if decision.promoted else "warning",
                title=(f"{challenger.label} promoted to production" if decision.promoted
                       else f"challenger {challenger.label} rejected; production stays "
                            f"{champion.label if champion else 'unset'}"),
                text=decision.reason,
                fields={"run_id": context.run_id, "actor": actor}), log=context.log)
        now = models.aliases(cfg.name)
        production = models.get(cfg.name, now.model_id("production")) if now.model_id("production") else None
        return _synced(context, models, _result(decision.action, decision.reason, production,
                                                now, challenger, champion, decision))

    def _canary_ended(context, models, change, production, actor) -> None:
        """The canary alias of the model that just became production was removed: audited."""
        ended = getattr(change, "ended_canary", None)
        if not ended:
            return
        models.append_audit(cfg.name, AuditEntry(
            action="canary_stop", actor=actor, run_id=context.run_id,
            reason=f"canary {production.label} became production; the canary alias is removed",
            from_version=ended.get("version"), from_model_id=ended.get("model_id"),
            details={"share": ended.get("share"), "trigger": trigger_of(context)}))
        context.log.info(f"{cfg.name}: canary {production.label} is production now; canary "
                         "alias removed")

    def _synced(context, models, result: dg.MaterializeResult) -> dg.MaterializeResult:
        """After an alias move: mirror the aliases in MLflow (when tracking is on)."""
        tracking.sync_aliases(cfg.name, models, context.log)
        return result

    def _manual(context, config, models, alerts, champion, moved, actor) -> dg.MaterializeResult:
        action = "rollback" if config.rollback else "promote"
        ref = config.version or "previous"
        try:
            target = models.resolve(cfg.name, ref)
        except UnknownModel as exc:
            hint = " (nothing to roll back to: production has never moved)" if ref == "previous" else ""
            raise dg.Failure(f"{action}: {exc}{hint}") from None
        if not target.gate_passed and not config.force:
            raise dg.Failure(f"{action}: {target.label} failed its gates ({target.gate_summary()}); "
                             "to do it anyway (audited): `force: true` in the launchpad, `--force` "
                             "with `ml-assets models`")
        try:  # production must point at a model the API and the predictions step can load
            models.load_text(target)
        except Exception as exc:  # noqa: BLE001 - missing, unreadable or altered: all refuse
            raise dg.Failure(f"{action}: {target.label} cannot be loaded ({type(exc).__name__}: "
                             f"{exc}); production stays "
                             f"{champion.label if champion else 'unset'}") from None
        if champion is not None and target.model_id == champion.model_id:
            reason = f"{target.label} is already production; nothing moved"
            return _result("keep", reason, champion, models.aliases(cfg.name), target, champion, None)
        try:
            change = rollback_change(target, champion.model_id if champion else None, moved)
            models.move_aliases(cfg.name, change)
        except AliasConflict as exc:
            raise dg.Failure(f"{action}: {exc}") from None
        _canary_ended(context, models, change, target, actor)
        reason = config.reason or (f"manual {action} by {actor}: production "
                                   f"{champion.label if champion else 'unset'} -> {target.label}")
        models.append_audit(cfg.name, AuditEntry(
            action=action, actor=actor, run_id=context.run_id, reason=reason,
            from_version=champion.version if champion else None,
            from_model_id=champion.model_id if champion else None,
            to_version=target.version, to_model_id=target.model_id,
            metrics={"target": target.metrics}, details={"forced": bool(config.force),
                                                        "trigger": trigger_of(context)}))
        alerts.send(Alert(event="rollback" if config.rollback else "promote", pipeline=cfg.name,
                          level="warning", title=f"production {action}: "
                          f"{champion.label if champion else 'unset'} -> {target.label}",
                          text=reason, fields={"run_id": context.run_id, "actor": actor}),
                    log=context.log)
        return _result(action, reason, target, models.aliases(cfg.name), target, champion, None)

    def _result(action, reason, production, state, challenger, champion, decision
                ) -> dg.MaterializeResult:
        if production is None:
            raise dg.Failure(
                f"pipeline {cfg.name!r} has no production model: {reason}. Train a model that "
                "passes its gates (or roll back to one) to make predictions.")
        meta = {
            MODEL_ID: production.model_id,
            MODEL_VERSION: production.version,
            "action": action,
            "reason": reason,
            "previous": (state.aliases.get("previous") or {}).get("version", "none"),
            "challenger": challenger.label if challenger else "none",
            "champion": champion.label if champion else "none",
            "model_uri": dg.MetadataValue.path(production.model_uri),
            "aliases": dg.MetadataValue.json(state.aliases),
        }
        if decision is not None:
            meta.update({metric_key(m): float(v) for m, v in decision.challenger_metrics.items()})
            meta.update({champion_metric_key(m): float(v)
                         for m, v in decision.champion_metrics.items()})
            if decision.comparisons:
                meta["comparison"] = dg.MetadataValue.md(_comparison_table(decision))
        return dg.MaterializeResult(metadata={k: metadata_value(v) for k, v in meta.items()},
                                    data_version=dg.DataVersion(production.model_id))

    return [production_model]


def _comparison_table(decision: Decision) -> str:
    rows = ["| metric | challenger | champion | tolerance | direction | ok |",
            "|---|---|---|---|---|---|"]
    for c in decision.comparisons:
        rows.append(f"| {c.metric} | {c.challenger:.4f} | {c.champion:.4f} | {c.tolerance:g} | "
                    f"{c.direction} | {'yes' if c.ok else 'no'} |")
    return "\n".join(rows)
