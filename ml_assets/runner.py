"""Run a pipeline's whole graph for a date range as one Dagster run, and summarize it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml_assets import failed_partitions
from ml_assets.config import PipelineConfig
from ml_assets.defs.names import (
    TAG_LAUNCHED_BY,
    PipelineNames,
    is_gate_check,
    metrics_from_metadata,
    range_tags,
)


def run_pipeline(cfg: PipelineConfig, start: dt.date, end: dt.date, as_of: dt.date,
                 instance=None, storage=None, log_level: str = "INFO") -> dict[str, Any]:
    """Execute the pipeline's job for [start, end) as one run in `instance` (default: the one at
    $DAGSTER_HOME); return the summary dict."""
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.environment import apply_dagster_event_settings

    apply_dagster_event_settings()  # before the run is planned: one planned event per asset
    defs = build_definitions([cfg], storage=storage)
    names = PipelineNames(cfg.name)
    job = defs.resolve_job_def(names.pipeline_job)
    instance = instance or dg.DagsterInstance.get()
    last = (end - dt.timedelta(days=1)).isoformat()
    result = job.execute_in_process(
        instance=instance,
        tags={
            **range_tags(start.isoformat(), last),
            TAG_LAUNCHED_BY: "ml-assets run",
        },
        run_config={
            "ops": {names.model_op: {"config": {"as_of": as_of.isoformat()}}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )
    summary = summarize(cfg, result, start, end, as_of, blocking_checks(defs))
    failed_partitions.record(summary, result, defs, instance, start, end)
    return summary


def blocking_checks(defs) -> dict[tuple, bool]:
    """(asset key, check name) -> whether the check is blocking, from the definitions."""
    return {
        (spec.asset_key, spec.name): spec.blocking
        for assets_def in defs.assets or []
        if hasattr(assets_def, "check_specs")
        for spec in assets_def.check_specs
    }


def summarize(cfg, result, start, end, as_of, blocking: dict[tuple, bool]) -> dict[str, Any]:

    layers: dict[str, dict[str, Any]] = {}
    model: dict[str, Any] = {}
    production: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        layer = mat.asset_key.path[-1]
        meta = {k: v.value for k, v in mat.metadata.items()}
        if mat.partition is not None:
            entry = layers.setdefault(layer, {"partitions": 0, "rows": 0})
            entry["partitions"] += 1
            entry["rows"] += int(meta.get("dagster/row_count", 0))
        if layer == "production_model":
            production = {k: meta.get(k) for k in ("model_id", "model_version", "action", "reason",
                                                   "previous")}
        if layer == "model":
            model = {
                "model_id": meta.get("model_id"),
                "version": meta.get("model_version"),
                "gate_passed": meta.get("gate_passed"),
                "as_of": meta.get("as_of"),
                "train_rows": meta.get("train_rows"),
                "validation_rows": meta.get("validation_rows"),
                "metrics": metrics_from_metadata(meta),
                "model_uri": meta.get("model_uri"),
            }
    checks, failed_blocking = [], []
    for ev in result.get_asset_check_evaluations():
        meta = {k: v.value for k, v in ev.metadata.items()}
        item = {
            "check": ev.check_name,
            "asset": ev.asset_key.to_user_string(),
            "passed": ev.passed,
            "blocking": bool(blocking.get((ev.asset_key, ev.check_name), False)),
            "observed": meta.get("observed"),
            "threshold": meta.get("threshold"),
            "partitions": meta.get("failing_partitions") or (
                "(unpartitioned)" if ev.asset_key.path[-1] in ("model", "production_model")
                else f"{start}..{end - dt.timedelta(days=1)}"
            ),
        }
        checks.append(item)
        if not ev.passed and item["blocking"]:
            failed_blocking.append(item)
    step_failures = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            msg = err.message.strip() if err else ""
            step_failures.append({"step": event.step_key, "error": msg[-2000:]})
    quarantined = layers.get("quarantine", {}).get("rows", 0)
    return {
        "pipeline": cfg.name,
        "run_id": result.run_id,
        "success": bool(result.success) and not failed_blocking,
        "range": {"start": start.isoformat(), "end": end.isoformat(), "as_of": as_of.isoformat()},
        "rows": {layer: v["rows"] for layer, v in layers.items()},
        "partitions": {layer: v["partitions"] for layer, v in layers.items()},
        "quarantined_rows": quarantined,
        "model": model,
        "production": production,
        "gate": {"passed": model.get("gate_passed"),
                 "checks": [c for c in checks if is_gate_check(c["check"])]},
        "predictions_written": layers.get("predictions", {}).get("rows", 0),
        "failed_checks": [c for c in checks if not c["passed"]],
        "failed_blocking_checks": failed_blocking,
        "step_failures": step_failures,
    }


def render(summary: dict[str, Any]) -> str:
    r = summary["range"]
    lines = [f"pipeline {summary['pipeline']}  run {summary['run_id']}  "
             f"{r['start']}..{r['end']} (as of {r['as_of']})"]
    for layer in ("raw", "processed", "quarantine", "features", "predictions"):
        if layer in summary["rows"]:
            lines.append(f"  {layer:<12} {summary['rows'][layer]:>9} rows in "
                         f"{summary['partitions'][layer]} partitions")
    m = summary["model"]
    if m:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        lines.append(f"  model        {m.get('version')} ({m['model_id']})  train {m['train_rows']} rows, validate "
                     f"{m['validation_rows']} rows  {metrics}")
        lines.append(f"  gate         {'PASSED' if m['gate_passed'] else 'FAILED'}: " + "; ".join(
            f"{c['check']} observed {c['observed']} (needs {c['threshold']})"
            for c in summary["gate"]["checks"]))
    p = summary.get("production")
    if p:
        lines.append(f"  production   {p['model_version']} ({p['model_id']}): {p['action']}; {p['reason']}")
    lines.append(f"  quarantined  {summary['quarantined_rows']} rows")
    lines.append(f"  predictions  {summary['predictions_written']} rows written")
    for c in summary["failed_checks"]:
        lines.append(f"  check {'FAILED' if c['blocking'] else 'warned'}: {c['check']} on {c['asset']} "
                     f"partition(s) {c['partitions']}: observed {c['observed']}, threshold {c['threshold']}")
    for f in summary["step_failures"]:
        lines.append(f"  step failed: {f['step']}: {f['error'].splitlines()[0] if f['error'] else ''}")
    lines += failed_partitions.render_lines(summary)
    lines.append("  result       " + ("OK" if summary["success"] else "FAILED"))
    return "\n".join(lines)


