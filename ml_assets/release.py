"""`ml-assets release` (what `make release` and CI's deploy job run): the seed's CI/CD for ML as
stages, each of which must pass before the next runs; nothing is promoted unless all do.

    validate   ingest the range (raw, processed, quarantine, features) with every check
    train      train a candidate as of `--as-of` (the model asset and its gates)
    evaluate   champion against challenger on the challenger's validation rows, without moving
               anything (the same decision production_model will take)
    deploy     materialize production_model: the promotion, its audit entry and alert; then, in
               a git checkout, the tag `model-vX.Y.Z` on the commit the model was trained from
               (checked before production moves; never pushed, never moved)

(`make release` runs the unit tests before these.) Exit status: 0 released (or nothing to do:
the candidate is already production); 1 a stage failed (a check, a gate, the comparison), and
nothing was promoted; 2 bad arguments, config or environment.
"""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path
from typing import Any

from ml_assets.config import PipelineConfig

STAGES = ("validate", "train", "evaluate", "deploy")
INGEST = ("raw", "processed", "quarantine", "features")


class StageFailed(RuntimeError):
    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage


def _actor() -> str:
    try:
        return f"release:{getpass.getuser()}"
    except (KeyError, OSError):
        return "release:unknown"


def _failed_checks(result) -> tuple[list[str], list[str]]:
    """(errors, warnings) among a run's check results, each as one line."""
    import dagster as dg

    errors, warnings = [], []
    for ev in result.get_asset_check_evaluations():
        if ev.passed:
            continue
        meta = {k: v.value for k, v in ev.metadata.items()}
        line = (f"{ev.asset_key.to_user_string()}:{ev.check_name} observed {meta.get('observed')} "
                f"(threshold {meta.get('threshold')})")
        (errors if ev.severity == dg.AssetCheckSeverity.ERROR else warnings).append(line)
    return errors, warnings


def _step_errors(result) -> list[str]:
    return [e.step_failure_data.error.message.strip().splitlines()[0] for e in result.all_events
            if e.is_step_failure and e.step_failure_data.error]


def release(cfg: PipelineConfig, start: dt.date, end: dt.date, as_of: dt.date,
            until: str = "deploy", tag: bool = True, log_level: str = "WARNING") -> dict[str, Any]:
    """Run the stages up to `until`; raise StageFailed at the first that fails."""
    import dagster as dg

    from ml_assets.commands.models import CommandError, create_git_tag, git_tag_plan
    from ml_assets.definitions import build_definitions
    from ml_assets.defs.lifecycle import challenge
    from ml_assets.defs.names import (
        TAG_ACTOR,
        TAG_LAUNCHED_BY,
        TAG_PIPELINE,
        TAG_TRIGGER,
        PipelineNames,
        range_tags,
    )

    names = PipelineNames(cfg.name)
    defs = build_definitions([cfg])
    storage = defs.resources["storage"]
    models = storage.models()
    actor = _actor()
    tags = {TAG_ACTOR: actor, TAG_TRIGGER: "manual", TAG_PIPELINE: cfg.name,
            TAG_LAUNCHED_BY: "ml-assets release"}
    logs = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    report: dict[str, Any] = {"pipeline": cfg.name, "stages": {}}
    job = defs.resolve_job_def(names.pipeline_job)
    last = (end - dt.timedelta(days=1)).isoformat()
    with dg.DagsterInstance.get() as instance:
        # ------------------------------------------------------------ validate
        result = job.execute_in_process(
            instance=instance, asset_selection=[*(names.lookup(n) for n in cfg.lookups),
                                                 *(names.key(layer) for layer in INGEST)],
            tags={**tags, **range_tags(start.isoformat(), last)}, run_config=logs,
            raise_on_error=False)
        errors, warnings = _failed_checks(result)
        report["stages"]["validate"] = {"run_id": result.run_id, "errors": errors,
                                        "warnings": warnings}
        if not result.success or errors:
            raise StageFailed("validate", "; ".join(errors + _step_errors(result)) or "run failed")
        if until == "validate":
            return report

        # ------------------------------------------------------------ train
        result = job.execute_in_process(
            instance=instance, asset_selection=[names.model], tags=tags,
            run_config={**logs, "ops": {names.model_op: {"config": {"as_of": as_of.isoformat()}}}},
            raise_on_error=False)
        errors, _ = _failed_checks(result)
        recorded = {}
        for event in result.get_asset_materialization_events():
            recorded = {k: v.value for k, v in event.materialization.metadata.items()}
        report["stages"]["train"] = {"run_id": result.run_id, "model_id": recorded.get("model_id"),
                                     "version": recorded.get("model_version"), "errors": errors}
        if not result.success or errors or not recorded:
            raise StageFailed("train", "; ".join(errors + _step_errors(result)) or "run failed")
        if until == "train":
            return report

        # ------------------------------------------------------------ evaluate (moves nothing)
        challenger = models.get(cfg.name, str(recorded["model_id"]))
        champion_id = models.aliases(cfg.name).model_id("production")
        champion = models.get(cfg.name, champion_id) if champion_id else None
        decision = challenge(cfg, models, storage, challenger, champion)
        report["stages"]["evaluate"] = {"action": decision.action, "reason": decision.reason,
                                        "comparisons": decision.comparison_records()}
        if decision.action == "reject":
            raise StageFailed("evaluate", decision.reason)
        if until == "evaluate" or decision.action == "keep":
            return report

        # ------------------------------------------------------------ deploy
        plan, tag_note = None, "not requested (--no-tag)"
        if tag:  # checked before production moves
            try:
                plan = git_tag_plan(challenger, str(Path.cwd()))
            except CommandError as exc:
                if "not in a git checkout" not in str(exc):
                    raise StageFailed("deploy", str(exc)) from None
                tag_note = f"no tag: {exc}"
        lifecycle = defs.resolve_job_def(names.lifecycle_job)
        result = lifecycle.execute_in_process(instance=instance, tags=tags, run_config=logs,
                                              raise_on_error=False)
        moved = {}
        for event in result.get_asset_materialization_events():
            moved = {k: v.value for k, v in event.materialization.metadata.items()}
        report["stages"]["deploy"] = {"run_id": result.run_id, "action": moved.get("action"),
                                      "production": moved.get("model_version"),
                                      "reason": moved.get("reason")}
        if not result.success or moved.get("action") != "promote":
            raise StageFailed("deploy", moved.get("reason") or "; ".join(_step_errors(result)))
        report["stages"]["deploy"]["tag"] = (
            create_git_tag(plan, challenger, actor) if plan is not None else tag_note)
    return report
