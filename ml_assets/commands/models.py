"""`ml-assets models`: look at the model store, promote, roll back, read the audit log.

Reading commands (`list`, `show`, `audit`) read the model store directly. Commands that move
production (`promote`, `rollback`) materialize `<name>/production_model` with config in the
instance at $DAGSTER_HOME, exactly as the UI's launchpad would: the move is a materialization
with lineage, an audit entry and an alert, and later predictions use the new production model.
"""

from __future__ import annotations

import json
from typing import Any

from ml_assets.config import PipelineConfig
from ml_assets.core.registry import ALIASES, ModelStore, ModelVersion, UnknownModel


class CommandError(ValueError):
    """Bad input for a models command (exit 2)."""


def store_for_env() -> ModelStore:
    from ml_assets.definitions import storage_for
    from ml_assets.environment import settings_from_env

    return storage_for(settings_from_env()).models()


def aliases_by_model(models: ModelStore, pipeline: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, entry in models.aliases(pipeline).aliases.items():
        out.setdefault(entry["model_id"], []).append(alias)
    return {k: sorted(v, key=ALIASES.index) for k, v in out.items()}


def version_record(v: ModelVersion, aliases: list[str]) -> dict[str, Any]:
    s = v.sidecar
    return {
        "version": v.version,
        "model_id": v.model_id,
        "created_at": v.created_at,
        "metrics": v.metrics,
        "gate_passed": v.gate_passed,
        "gates": v.gates,
        "aliases": aliases,
        "train_days": [s.get("train_days", [None])[0], s.get("train_days", [None])[-1]],
        "validation_days": [s.get("validation_days", [None])[0], s.get("validation_days", [None])[-1]],
        "model_uri": v.model_uri,
    }


def cmd_list(cfg: PipelineConfig, models: ModelStore, as_json: bool) -> tuple[int, str]:
    by_model = aliases_by_model(models, cfg.name)
    records = [version_record(v, by_model.get(v.model_id, [])) for v in models.versions(cfg.name)]
    if as_json:
        return 0, json.dumps({"pipeline": cfg.name, "versions": records}, default=str)
    if not records:
        return 0, f"pipeline {cfg.name}: no models yet"
    gated = list(cfg.gates)
    lines = [f"{'version':<10} {'model_id':<13} {'created_at':<27} {'gates':<7} "
             + " ".join(f"{m:>9}" for m in gated) + "  aliases"]
    for r in records:
        metrics = " ".join(f"{r['metrics'].get(m, float('nan')):>9.4f}" for m in gated)
        lines.append(f"{r['version']:<10} {r['model_id']:<13} {r['created_at'][:26]:<27} "
                     f"{'passed' if r['gate_passed'] else 'FAILED':<7} {metrics}  "
                     f"{','.join(r['aliases'])}")
    return 0, "\n".join(lines)


def cmd_show(cfg: PipelineConfig, models: ModelStore, ref: str, as_json: bool) -> tuple[int, str]:
    try:
        v = models.resolve(cfg.name, ref)
    except UnknownModel as exc:
        raise CommandError(str(exc)) from None
    aliases = aliases_by_model(models, cfg.name).get(v.model_id, [])
    record = {**version_record(v, aliases), "params": v.sidecar.get("params"),
              "contract": v.sidecar.get("contract"), "lineage": v.sidecar.get("lineage"),
              "manifest": v.sidecar.get("manifest"), "sidecar_uri": v.sidecar_uri}
    if as_json:
        return 0, json.dumps(record, default=str)
    lines = [f"{v.label}  pipeline {cfg.name}  aliases: {', '.join(aliases) or 'none'}",
             f"  created      {v.created_at}",
             f"  gates        {'passed' if v.gate_passed else 'FAILED'}: {v.gate_summary()}",
             "  metrics      " + ", ".join(f"{k}={val:.4f}" for k, val in v.metrics.items()),
             f"  trained on   {record['train_days'][0]}..{record['train_days'][1]}, validated on "
             f"{record['validation_days'][0]}..{record['validation_days'][1]}",
             f"  model        {v.model_uri}"]
    git = (v.sidecar.get("manifest") or {}).get("git")
    if git:
        lines.append(f"  code         {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}")
    return 0, "\n".join(lines)


def cmd_audit(cfg: PipelineConfig, models: ModelStore, limit: int | None, as_json: bool
              ) -> tuple[int, str]:
    entries = models.audit(cfg.name)
    if limit is not None:
        entries = entries[-limit:]
    if as_json:
        return 0, json.dumps({"pipeline": cfg.name, "entries": entries}, default=str)
    if not entries:
        return 0, f"pipeline {cfg.name}: the audit log is empty"
    lines = []
    for e in entries:
        move = f"{e.get('from_version') or '-'} -> {e.get('to_version') or '-'}"
        lines.append(f"{e['time'][:19]}  {e['action']:<9} {move:<20} {e['actor']:<34} "
                     f"{(e.get('run_id') or '')[:8]:<8}  {e['reason']}")
    return 0, "\n".join(lines)


def move_production(cfg: PipelineConfig, models: ModelStore, config: dict[str, Any],
                    actor: str, log_level: str = "WARNING") -> dict[str, Any]:
    """Materialize production_model with `config` in the $DAGSTER_HOME instance; return what it
    recorded (or the failure)."""
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.defs.names import (
        TAG_ACTOR,
        TAG_LAUNCHED_BY,
        TAG_PIPELINE,
        TAG_TRIGGER,
        PipelineNames,
    )

    names = PipelineNames(cfg.name)
    defs = build_definitions([cfg])
    job = defs.resolve_job_def(names.lifecycle_job)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        run_config={"ops": {names.production_model_op: {"config": config}},
                    "loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={TAG_ACTOR: actor, TAG_TRIGGER: "manual", TAG_PIPELINE: cfg.name,
              TAG_LAUNCHED_BY: "ml-assets models"},
        raise_on_error=False,
    )
    out: dict[str, Any] = {"run_id": result.run_id, "success": bool(result.success)}
    for event in result.get_asset_materialization_events():
        out.update({k: v.value for k, v in event.materialization.metadata.items()
                    if k in ("model_id", "model_version", "action", "reason", "previous")})
    errors = [e.step_failure_data.error.message.strip() for e in result.all_events
              if e.is_step_failure and e.step_failure_data.error]
    if errors:
        out["error"] = errors[0].splitlines()[0]
    return out


def resolve_or_fail(cfg: PipelineConfig, models: ModelStore, ref: str) -> ModelVersion:
    try:
        return models.resolve(cfg.name, ref)
    except UnknownModel as exc:
        raise CommandError(str(exc)) from None
