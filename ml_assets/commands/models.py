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
from ml_assets.core.lookups import lookup_line, mixed_lookups
from ml_assets.core.registry import ALIASES, ModelStore, ModelVersion, UnknownModel


class CommandError(ValueError):
    """Bad input for a models command (exit 2)."""


def store_for_env() -> ModelStore:
    from ml_assets.definitions import storage_for
    from ml_assets.environment import settings_from_env

    return storage_for(settings_from_env()).models()


def storage_for_env():
    """The StorageResource the platform uses (for reading recorded URIs, local or S3)."""
    from ml_assets.definitions import storage_for
    from ml_assets.environment import settings_from_env

    return storage_for(settings_from_env())


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
    lookups = (v.sidecar.get("lineage") or {}).get("lookups") or {}
    mixed = mixed_lookups(lookups)
    for name, entry in lookups.items():  # the versions its training window was built from
        lines.append(f"  lookup       {lookup_line(name, entry)}"
                     + ("  (mixed: trained anyway)" if name in mixed else ""))
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
        lines.append(f"{e['time'][:19]}  {e['action']:<12} {move:<20} {e['actor']:<34} "
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
    from ml_assets.runner import console_logger

    names = PipelineNames(cfg.name)
    # one line per Dagster message on the console (a refused promotion is not a stack trace)
    defs = dg.Definitions.merge(build_definitions([cfg]),
                                dg.Definitions(loggers={"console": console_logger()}))
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


# ---------------------------------------------------------------- canary
def cmd_canary(cfg: PipelineConfig, models: ModelStore, ref: str | None, share: float | None,
               stop: bool, force: bool, reason: str | None, actor: str, as_json: bool
               ) -> tuple[int, str]:
    """Start, move or stop the canary (the `canary` alias and its traffic share), audited.
    Production never moves here; promote the canary with `promote` when it has proved itself."""
    import datetime as dt

    from ml_assets.core.lifecycle import set_alias_change
    from ml_assets.core.registry import AuditEntry

    state = models.aliases(cfg.name)
    current = state.aliases.get("canary")
    production = state.aliases.get("production")
    if ref is None and not stop:  # status
        # a canary alias left on the production model is ignored by the API (see serving)
        promoted = bool(current and production
                        and current.get("model_id") == production.get("model_id"))
        record = {"pipeline": cfg.name, "canary": current, "production": production,
                  "canary_in_effect": bool(current) and not promoted}
        if as_json:
            return 0, json.dumps(record, default=str)
        if not current:
            return 0, f"pipeline {cfg.name}: no canary (production {_label(production)})"
        if promoted:
            return 0, (f"pipeline {cfg.name}: no canary in effect: the canary alias points at "
                       f"production {_label(production)}, so the API ignores it and sends every "
                       "request to production (`--stop` removes the alias)")
        return 0, (f"pipeline {cfg.name}: canary {_label(current)} takes "
                   f"{float(current.get('share') or cfg.serving.canary_share):.1%} of requests "
                   f"since {current.get('since', '?')}; production {_label(production)}")
    moved = {"since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "actor": actor}
    if stop:
        if not current:
            record = {"pipeline": cfg.name, "action": "none", "canary": None}
            return 0, (json.dumps(record) if as_json else
                       f"pipeline {cfg.name}: no canary was running; nothing to stop")
        models.move_aliases(cfg.name, set_alias_change("canary", None, moved))
        entry = models.append_audit(cfg.name, AuditEntry(
            action="canary_stop", actor=actor,
            reason=reason or f"canary {_label(current)} stopped by {actor}",
            from_version=current.get("version"), from_model_id=current.get("model_id"),
            details={"share": current.get("share"), "trigger": "manual"}))
        text = f"canary {_label(current)} stopped; all requests go to production {_label(production)}"
    else:
        target = resolve_or_fail(cfg, models, ref)  # type: ignore[arg-type]
        if production and production.get("model_id") == target.model_id:
            raise CommandError(f"{target.label} is already production; a canary must be "
                               "another version")
        if not target.gate_passed and not force:
            raise CommandError(f"{target.label} failed its gates ({target.gate_summary()}); pass "
                               "--force to send it traffic anyway (it is audited)")
        share = share if share is not None else cfg.serving.canary_share
        models.move_aliases(cfg.name, set_alias_change("canary", target, {**moved, "share": share}))
        entry = models.append_audit(cfg.name, AuditEntry(
            action="canary_start", actor=actor,
            reason=reason or (f"canary {target.label} at {share:.1%} of requests beside "
                              f"production {_label(production)}"),
            from_version=(current or {}).get("version"),
            from_model_id=(current or {}).get("model_id"),
            to_version=target.version, to_model_id=target.model_id, metrics=target.metrics,
            details={"share": share, "forced": bool(force and not target.gate_passed),
                     "production": (production or {}).get("version"), "trigger": "manual"}))
        text = (f"canary {target.label} takes {share:.1%} of requests; production stays "
                f"{_label(production)}")
    _after_alias_move(cfg, models, entry)
    if as_json:
        return 0, json.dumps({"pipeline": cfg.name, "action": entry["action"], "audit": entry,
                              "canary": models.aliases(cfg.name).aliases.get("canary")},
                             default=str)
    return 0, text


def _label(entry: dict | None) -> str:
    if not entry:
        return "unset"
    return f"{entry.get('version')} ({entry.get('model_id')})"


def _after_alias_move(cfg: PipelineConfig, models: ModelStore, entry: dict) -> None:
    """Alert (log, and the webhook when ALERT_WEBHOOK_URL is set); mirror the aliases in MLflow
    (when MLFLOW_TRACKING_URI is set). Neither can fail the command."""
    import logging

    from ml_assets.core.alerts import Alert, Notifier
    from ml_assets.defs.tracking import sync_aliases
    from ml_assets.environment import settings_from_env

    log = logging.getLogger("ml_assets.cli")
    version = entry.get("to_version") or entry.get("from_version")
    Notifier(settings_from_env().alert_webhook_url).send(Alert(
        event="canary", pipeline=cfg.name, level="info",
        title=f"{entry['action'].replace('_', ' ')}: {version}", text=entry["reason"],
        fields={"actor": entry["actor"]}))
    sync_aliases(cfg.name, models, log)


# ---------------------------------------------------------------- reproduce
def cmd_reproduce(cfg: PipelineConfig, storage: Any, ref: str, as_json: bool) -> tuple[int, str]:
    """Retrain `ref` from its recorded inputs; 0 byte-identical, 1 not (with why)."""
    from ml_assets.core.reproduce import ReproductionError, reproduce
    from ml_assets.core.storage import read_uri

    models = storage.models()
    try:
        report = reproduce(models, cfg.name, ref,
                           lambda uri: read_uri(uri, storage.client_for(uri)))
    except ReproductionError as exc:
        raise CommandError(str(exc)) from None
    code = 0 if report.identical else 1
    return code, json.dumps(report.to_dict(), default=str) if as_json else report.render()


# ---------------------------------------------------------------- git tags
def git_tag_plan(version: ModelVersion, cwd: str | None = None) -> dict[str, Any]:
    """Where `model-vX.Y.Z` goes: the commit the model records, in the git checkout at `cwd`.
    Raises CommandError when that cannot be done (checked before anything moves)."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)

    try:
        top = git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"--git-tag: git is not available ({exc})") from None
    if top.returncode != 0:
        raise CommandError("--git-tag: not in a git checkout (run it from the repository the "
                           "model was trained from)")
    recorded = ((version.sidecar.get("manifest") or {}).get("git") or {})
    commit = recorded.get("commit")
    if not commit:
        raise CommandError(f"--git-tag: {version.label} records no git commit (it was not "
                           "trained in a git checkout), so there is no code version to tag")
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise CommandError(f"--git-tag: {version.label} was trained at commit {commit[:12]}, "
                           f"which this checkout ({top.stdout.strip()}) does not have; fetch it "
                           "first")
    tag = f"model-{version.version}"
    existing = git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    if existing.returncode == 0 and existing.stdout.strip() != commit:
        raise CommandError(f"--git-tag: tag {tag} already exists at "
                           f"{existing.stdout.strip()[:12]}, not at {commit[:12]}")
    return {"tag": tag, "commit": commit, "dirty": bool(recorded.get("dirty")),
            "exists": existing.returncode == 0, "repo": top.stdout.strip(), "cwd": cwd}


def create_git_tag(plan: dict[str, Any], version: ModelVersion, actor: str) -> str:
    import subprocess

    if plan["exists"]:
        return f"tag {plan['tag']} already at {plan['commit'][:12]}"
    message = (f"{version.label} promoted to production by {actor}\n\nmodel_sha256 "
               f"{version.model_sha256}\nmodel_uri {version.model_uri}"
               + ("\ntrained on a work tree with uncommitted changes" if plan["dirty"] else ""))
    done = subprocess.run(["git", "tag", "-a", plan["tag"], plan["commit"], "-m", message],
                          cwd=plan["cwd"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"git tag failed: {done.stderr.strip()}")
    return (f"tagged {plan['commit'][:12]} as {plan['tag']}"
            + (" (the model was trained on uncommitted changes)" if plan["dirty"] else ""))
