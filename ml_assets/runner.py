"""Run a pipeline's whole graph for a date range as one Dagster run, and summarize it.

The console shows Dagster's log lines at the chosen level, one line each: stack traces stay in the
run's event log (and on the console with DEBUG). A failed step is summarized in one line naming
the step (or the transform), the partition(s), the exception type and message.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Collection
from typing import Any

from ml_assets import failed_partitions, stale_runs
from ml_assets.config import PipelineConfig
from ml_assets.core.days import ranges_text
from ml_assets.defs.names import (
    LOOKUPS,
    TAG_ACTOR,
    TAG_LAUNCHED_BY,
    TAG_PARTITION,
    TAG_PIPELINE,
    TAG_TRIGGER,
    PipelineNames,
    is_gate_check,
    metrics_from_metadata,
    range_tags,
)


def run_pipeline(cfg: PipelineConfig, start: dt.date, end: dt.date, as_of: dt.date,
                 instance=None, storage=None, log_level: str = "INFO",
                 train: bool = True) -> dict[str, Any]:
    """Execute the pipeline's job for [start, end) as one run in `instance` (default: the one at
    $DAGSTER_HOME); return the summary dict. `train=False`: the daily job instead (no model,
    no promotion: the days are scored by the production model as it stands)."""
    import dagster as dg

    from ml_assets.definitions import build_definitions, storage_for
    from ml_assets.defs.lifecycle import cli_actor
    from ml_assets.defs.policies import training_pool
    from ml_assets.environment import apply_dagster_event_settings, settings_from_env

    apply_dagster_event_settings()  # before the run is planned: one planned event per asset
    storage = storage or storage_for(settings_from_env())
    defs = dg.Definitions.merge(build_definitions([cfg], storage=storage),
                                dg.Definitions(loggers={"console": console_logger()}))
    names = PipelineNames(cfg.name)
    job = defs.resolve_job_def(names.pipeline_job if train else names.daily_job)
    instance = instance or dg.DagsterInstance.get()
    # runs of earlier `ml-assets run` processes on this host that died (kill -9, OOM) are marked
    # failed, so they do not look as if they were still writing (see ml_assets.stale_runs)
    stale = stale_runs.fail_dead_runs(instance, TAG_LAUNCHED_BY, "ml-assets run")
    stale_runs.ensure_pool(instance, training_pool(cfg))
    moved_from = store_moved_from(instance, names.raw, storage.tables().uri("x")[:-1])
    last = (end - dt.timedelta(days=1)).isoformat()
    result = job.execute_in_process(
        instance=instance,
        tags={
            **range_tags(start.isoformat(), last),
            TAG_LAUNCHED_BY: "ml-assets run",
            # as the runs the platform launches (README: tags); the actor names the CLI user
            TAG_TRIGGER: "manual", TAG_PIPELINE: cfg.name,
            TAG_PARTITION: (as_of if train else end - dt.timedelta(days=1)).isoformat(),
            TAG_ACTOR: cli_actor(),
            **stale_runs.process_tags(),
        },
        run_config={
            **({"ops": {names.model_op: {"config": {"as_of": as_of.isoformat()}}}} if train else {}),
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )
    summary = summarize(cfg, result, start, end, as_of, blocking_checks(defs))
    summary["trained"] = train
    if not train:
        summary["range"]["as_of"] = None  # nothing was trained
    summary["prediction_days"] = prediction_days(summary, storage, cfg.name)
    failed_partitions.record(summary, result, defs, instance, start, end)
    summary["stale_runs_failed"] = stale
    summary["store_moved_from"] = moved_from
    return summary


def store_moved_from(instance, raw_key, root: str) -> str | None:
    """The store root the pipeline's newest raw partition was written under, when it is not
    `root` (this run's tables store): a mistyped DATA_PATH or S3_BUCKET would otherwise start
    a second store silently, without the first one's key history and PII key record."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=raw_key), limit=1)
    mat = records.records[0].asset_materialization if records.records else None
    uri = mat.metadata.get("dagster/uri") if mat is not None else None
    if uri is None or str(uri.value).startswith(root):
        return None
    marker = "/" + "/".join(raw_key.path) + "/"  # tables are stored under <root>/<asset key>/
    text = str(uri.value)
    return text.split(marker)[0] if marker in text else text


class _OneLine(logging.Formatter):
    """Dagster's console format, but only the first line of each message: a step failure's error
    and stack trace are in the run's event log, not on the user's terminal."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.split("\n", 1)[0]


def _not_a_consequence(record: logging.LogRecord) -> bool:
    """Drop the "Dependencies for step X failed ... Not executing." line of every step after a
    failed one (the summary names the failure; the event log keeps them)."""
    message = record.getMessage()
    return not ("Dependencies for step" in message and "Not executing" in message)


def console_logger():
    """The `console` logger of `ml-assets run`: Dagster's at DEBUG (everything, stack traces
    included), else one line per message at the chosen level, on stderr."""
    import dagster as dg

    @dg.logger(
        config_schema={"log_level": dg.Field(str, is_required=False, default_value="WARNING"),
                       "name": dg.Field(str, is_required=False, default_value="dagster")},
        description="Dagster's console log, one line per message below DEBUG.",
    )
    def console(init_context) -> logging.Logger:
        level = init_context.logger_config["log_level"].upper()
        logger = logging.Logger(init_context.logger_config["name"], level=level)
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
        if level == "DEBUG":
            handler.setFormatter(logging.Formatter(fmt))
        else:
            handler.setFormatter(_OneLine(fmt))
            handler.addFilter(_not_a_consequence)
        logger.addHandler(handler)
        return logger

    return console


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
    lookups: dict[str, dict[str, Any]] = {}
    scored_by = None
    predicted_days: list[str] = []
    extra_columns: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        layer = mat.asset_key.path[-1]
        meta = {k: v.value for k, v in mat.metadata.items()}
        if len(mat.asset_key.path) == 3 and mat.asset_key.path[1] == LOOKUPS:
            lookups[layer] = {"rows": meta.get("dagster/row_count"), "source": meta.get("source"),
                              "data_version": (mat.tags or {}).get("dagster/data_version")}
            continue
        if layer == "predictions" and mat.partition is not None:
            predicted_days.append(mat.partition)
        for key, value in meta.items():  # columns outside the contract, when ingest names them
            if not key.startswith("extra_columns") or value in (None, "", "none", 0, []):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                extra_columns[key] = extra_columns.get(key, 0) + value  # counts add up
            else:
                names = value if isinstance(value, (list, tuple)) else str(value).split(",")
                extra_columns.setdefault(key, set()).update(
                    str(n).strip() for n in names if str(n).strip())
        if mat.partition is not None:
            entry = layers.setdefault(layer, {"partitions": 0, "rows": 0})
            entry["partitions"] += 1
            entry["rows"] += int(meta.get("dagster/row_count", 0))
        if layer == "predictions" and meta.get("model_id"):
            scored_by = meta.get("model_id")
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
                # days of the training window never materialized, or materialized empty
                "window_days_missing": _days(meta.get("window_days_missing")),
                "window_days_empty": _days(meta.get("window_days_empty")),
                # lookups whose versions differ across the window's features, one line each
                "lookup_versions_mixed": _lines(meta.get("lookup_versions_mixed")),
            }
    checks, failed_blocking = [], []
    last = end - dt.timedelta(days=1)
    for ev in result.get_asset_check_evaluations():
        meta = {k: v.value for k, v in ev.metadata.items()}
        item = {
            "check": ev.check_name,
            "asset": ev.asset_key.to_user_string(),
            "passed": ev.passed,
            "blocking": bool(blocking.get((ev.asset_key, ev.check_name), False)),
            "observed": meta.get("observed"),
            "threshold": meta.get("threshold"),
            "description": " ".join((ev.description or "").split()) or None,
            "partitions": meta.get("failing_partitions") or (
                "(unpartitioned)" if ev.asset_key.path[-1] in ("model", "production_model")
                else f"{start}..{last}"
            ),
        }
        if meta.get("blocked_partitions") is not None:  # readable_files: the days it blocks
            blocked = meta["blocked_partitions"]
            item["partitions"] = "none blocked" if blocked == "none" else blocked
        if meta.get("level") is not None:  # monitoring: its level and the days at each level
            item["level"] = meta["level"]
            days = {lvl: _days(meta.get(f"{lvl}_days")) for lvl in ("error", "warn")}
            item["error_days"], item["warn_days"] = days["error"], days["warn"]
            if days["error"] or days["warn"]:
                item["partitions"] = ranges_text(sorted(days["error"] + days["warn"]))
        checks.append(item)
        if not ev.passed and item["blocking"]:
            failed_blocking.append(item)
    ops = PipelineNames(cfg.name)
    unpartitioned = {ops.model_op, ops.production_model_op,
                     *("__".join(ops.lookup(n).path) for n in cfg.lookups)}
    step_failures = [step_failure(event, start, last, unpartitioned) for event in result.all_events
                     if event.is_step_failure]
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
        "lookups": lookups,
        "extra_columns": {k: sorted(v) if isinstance(v, set) else v
                          for k, v in extra_columns.items()},
        "predicted_days": sorted(predicted_days),
        "scored_by": scored_by,
    }


def _days(value) -> list[str]:
    """Days written in metadata as 'a, b' ('none': no day) back into a list."""
    if not value or value == "none":
        return []
    return [d.strip() for d in str(value).split(",") if d.strip()]


def _lines(value) -> list[str]:
    """Lines written in metadata one a line ('none': no line) back into a list."""
    if not value or value == "none":
        return []
    return [line for line in str(value).splitlines() if line.strip()]




LINE_LIMIT = 1000


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """`text` on one line; past `limit` characters, cut with a marker that says so (the run's
    logs keep the whole message)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]} [... {len(flat) - limit} more characters in the run's logs]"


def _error_parts(err) -> tuple[str, str]:
    """(exception class, one-line message) of the user's exception inside a Dagster error."""
    while err is not None and err.cause is not None and err.cls_name in (
            "DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"):
        err = err.cause
    if err is None:
        return "", ""
    message = (err.message or "").strip()
    prefix = f"{err.cls_name}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    elif ": " in message.split("\n", 1)[0] and message.split(":", 1)[0].endswith(err.cls_name or "?"):
        message = message.split(": ", 1)[1]
    return err.cls_name or "", one_line(message)


def step_failure(event, start: dt.date, last: dt.date,
                 unpartitioned: Collection[str] = ()) -> dict[str, Any]:
    """One failed step as one line: the step, the partition(s), the exception type and message
    (a dg.Failure's description already names the transform and the partition). A step in
    `unpartitioned` (the model, production_model, lookup tables) names no partitions."""
    data = event.step_failure_data
    described = data.user_failure_data.description if data.user_failure_data else None
    exc_type, message = _error_parts(data.error)
    if event.step_key in unpartitioned:
        partitions = "(unpartitioned)"
    else:
        partitions = f"{start}..{last}" if start != last else start.isoformat()
    where = "" if event.step_key in unpartitioned else f" on partitions {partitions}"
    if described:
        error = one_line(described)
        line = (f"step {event.step_key} failed: {error}" if "partition" in error
                else f"step {event.step_key} failed{where}: {error}")
    else:
        error = f"{exc_type}: {message}" if exc_type else message
        line = f"step {event.step_key} failed{where}: {error}"
    return {"step": event.step_key, "partitions": partitions, "error_type": exc_type,
            "error": error, "line": line}


def prediction_days(summary: dict[str, Any], storage, pipeline: str) -> dict[str, Any]:
    """Which predicted days fell in the scoring model's training window (in-sample: fit or
    validation days) and which did not (out-of-sample)."""
    days = summary.get("predicted_days") or []
    if not days:
        return {}
    model_id = summary.get("scored_by")
    try:
        version = storage.models().get(pipeline, model_id) if model_id else None
    except Exception:  # the summary must not fail on a missing model record
        version = None
    if version is None:
        return {"days": ranges_text(days), "model": model_id, "in_sample": None, "out_of_sample": None}
    fit = set(version.sidecar.get("train_days", []))
    validation = set(version.sidecar.get("validation_days", []))
    window = sorted(fit | validation)
    in_sample = [d for d in days if d in fit or d in validation]
    return {
        "days": ranges_text(days),
        "model": version.label,
        "training_window": f"{window[0]}..{window[-1]}" if window else None,
        "in_sample": ranges_text(in_sample),
        "in_sample_fit": ranges_text([d for d in days if d in fit]),
        "in_sample_validation": ranges_text([d for d in days if d in validation]),
        "out_of_sample": ranges_text([d for d in days if d not in fit and d not in validation]),
        "in_sample_days": len(in_sample),
        "out_of_sample_days": len(days) - len(in_sample),
    }


def render(summary: dict[str, Any]) -> str:
    r = summary["range"]
    lines = [f"pipeline {summary['pipeline']}  run {summary['run_id']}  {r['start']}..{r['end']} "
             + (f"(as of {r['as_of']})" if r.get("as_of") else "(--no-train: no model trained)")]
    if summary.get("store_moved_from"):
        lines.append(f"  warning      the pipeline's last raw partition was written under "
                     f"{summary['store_moved_from']}, not under this run's tables store: check "
                     "DATA_PATH / S3_BUCKET (each store keeps its own key history and PII key "
                     "record)")
    for run_id in summary.get("stale_runs_failed") or []:
        lines.append(f"  earlier run  {run_id}: its process is gone; marked FAILURE (rerun its range "
                     "to retry)")
    for name, info in (summary.get("lookups") or {}).items():
        lines.append(f"  lookup       {name}: {info['rows']} rows from {info['source']} "
                     f"(version {str(info['data_version'])[:12]})")
    for layer in ("raw", "processed", "quarantine", "features", "predictions"):
        if layer in summary["rows"]:
            lines.append(f"  {layer:<12} {summary['rows'][layer]:>9} rows in "
                         f"{summary['partitions'][layer]} partitions")
    m = summary["model"]
    if m:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        lines.append(f"  model        {m.get('version')} ({m['model_id']})  train {m['train_rows']} rows, validate "
                     f"{m['validation_rows']} rows  {metrics}")
        gaps = [f"{len(m[k])} day(s) {what} ({ranges_text(m[k])})"
                for k, what in (("window_days_missing", "never materialized"),
                                ("window_days_empty", "empty")) if m.get(k)]
        if gaps:
            lines.append(f"  window       trained anyway without {' and '.join(gaps)}: "
                         "backfill them and re-run to train on the whole window")
        for line in m.get("lookup_versions_mixed") or []:
            lines.append(f"  lookups      trained anyway on mixed lookup versions: {line}")
        lines.append(f"  gate         {'PASSED' if m['gate_passed'] else 'FAILED'}: " + "; ".join(
            f"{c['check']} observed {c['observed']} (needs {c['threshold']})"
            for c in summary["gate"]["checks"]))
    p = summary.get("production")
    if p:
        lines.append(f"  production   {p['model_version']} ({p['model_id']}): {p['action']}; {p['reason']}")
    lines.append(f"  quarantined  {summary['quarantined_rows']} rows")
    for key, values in (summary.get("extra_columns") or {}).items():
        shown = ", ".join(map(str, values)) if isinstance(values, list) else values
        lines.append(f"  {key.replace('_', ' ')}: {shown}")
    lines.append(f"  predictions  {summary['predictions_written']} rows written")
    pdays = summary.get("prediction_days") or {}
    if pdays.get("in_sample") is not None:
        lines.append(f"  scored days  by {pdays['model']}, trained on {pdays['training_window']}: "
                     f"in-sample {pdays['in_sample'] or 'none'} ({pdays['in_sample_days']} days); "
                     f"out-of-sample {pdays['out_of_sample'] or 'none'} "
                     f"({pdays['out_of_sample_days']} days)")
    elif pdays:
        lines.append(f"  scored days  {pdays['days']} by {pdays['model']} (training window unknown)")
    for c in summary["failed_checks"]:
        verdict = "FAILED" if c["blocking"] else c.get("level", "warned")
        if "level" in c:
            days = "; ".join(f"{lvl.upper()} on {ranges_text(c[f'{lvl}_days'])}"
                             for lvl in ("error", "warn") if c[f"{lvl}_days"])
            lines.append(f"  check {verdict}: {c['check']} on {c['asset']}: {days or c['partitions']}"
                         f" (observed {c['observed']}, threshold {c['threshold']})")
            continue
        found = (f"observed {c['observed']}, threshold {c['threshold']}"
                 if c["observed"] is not None or not c.get("description") else c["description"])
        lines.append(f"  check {verdict}: {c['check']} on {c['asset']} "
                     f"partition(s) {c['partitions']}: {found}")
    for f in summary["step_failures"]:
        lines.append(f"  {f['line']}")
    lines += failed_partitions.render_lines(summary)
    m = summary.get("model") or {}
    if m and not m.get("gate_passed") and not summary.get("predictions_written"):
        r = summary["range"]  # the same range again would retrain the same failing model
        lines.append(f"    score these days with the production model as it stands: ml-assets run "
                     f"--start {r['start']} --end {r['end']} --no-train")
    lines.append("  result       " + ("OK" if summary["success"] else "FAILED"))
    return "\n".join(lines)


