"""Which partitions a run planned but did not materialize, named where a user looks.

With `DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true` (see ml_assets.environment) Dagster
writes one "materialization planned" event per asset and run instead of one per partition, and
then does not mark a failed run's partitions as failed in the asset status (Dagster PR 28113).
This module names them instead, from the run's own events:

- the run summary (`ml-assets run` and `--json`) gets `failed_partitions`:
  `{"days": [...], "ranges": "2024-03-02..2024-03-04", "by_asset": {asset: ranges},
  "retry": {"start": ..., "end": ...}}` (end exclusive, as `ml-assets run --end` takes it),
  or `{}` when every planned partition was materialized;
- the run gets the tag `ml_assets/failed_partitions` (the ranges), visible in the UI's run list
  and filterable;
- re-running the `retry` range (`ml-assets run --start S --end E`) materializes them.

No Dagster import at module level: the CLI imports this before it needs Dagster.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml_assets.core.days import ranges_text

TAG_FAILED_PARTITIONS = "ml_assets/failed_partitions"
#: Run tags are for humans and filters; a run that failed on thousands of scattered days keeps
#: the first ranges in the tag and the whole list in its summary.
MAX_TAG_CHARS = 1000


def compress(days: list[str]) -> str:
    """Sorted ISO days as ranges: ['2024-03-01', '2024-03-02', '2024-03-05'] ->
    '2024-03-01..2024-03-02, 2024-03-05'."""
    return ranges_text(days)


def unmaterialized(planned: set[str], partitioned: set[str],
                   materialized: dict[str, set[str]], days: list[str]) -> dict[str, list[str]]:
    """Asset -> the days of `days` it was planned for but has no materialization of."""
    out = {}
    for asset in sorted(planned & partitioned):
        missing = [d for d in days if d not in materialized.get(asset, set())]
        if missing:
            out[asset] = missing
    return out


def report(by_asset: dict[str, list[str]]) -> dict[str, Any]:
    if not by_asset:
        return {}
    days = sorted({d for missing in by_asset.values() for d in missing})
    last = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
    return {
        "days": days,
        "ranges": compress(days),
        "by_asset": {asset: compress(missing) for asset, missing in by_asset.items()},
        "retry": {"start": days[0], "end": last.isoformat()},
    }


def failed_partitions(result, defs, instance, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The report for an executed run: every partitioned asset the run planned (its planned
    events, in the instance's event log: one per asset with the setting on), against the
    partitions it materialized, over the run's days [start, end)."""
    import dagster as dg

    partitioned = {
        key.to_user_string()
        for assets_def in defs.assets or []
        if isinstance(assets_def, dg.AssetsDefinition) and assets_def.partitions_def is not None
        for key in assets_def.keys
    }
    planned = {
        entry.dagster_event.asset_key.to_user_string()
        for entry in instance.all_logs(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        if entry.dagster_event is not None and entry.dagster_event.asset_key is not None
    }
    materialized: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.partition is not None:
            materialized.setdefault(mat.asset_key.to_user_string(), set()).add(mat.partition)
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]
    return report(unmaterialized(planned, partitioned, materialized, days))


def tag_value(failed: dict[str, Any]) -> str:
    text = failed.get("ranges", "")
    if len(text) > MAX_TAG_CHARS:
        text = text[:MAX_TAG_CHARS].rsplit(", ", 1)[0] + f", ... ({len(failed['days'])} days)"
    return text


def record(summary: dict[str, Any], result, defs, instance, start: dt.date, end: dt.date) -> None:
    """Add `failed_partitions` to a run summary, and tag the run when some partitions failed."""
    if result.success and summary.get("success", True):
        summary["failed_partitions"] = {}
        return
    failed = failed_partitions(result, defs, instance, start, end)
    summary["failed_partitions"] = failed
    if failed:
        instance.add_run_tags(result.run_id, {TAG_FAILED_PARTITIONS: tag_value(failed)})


def render_lines(summary: dict[str, Any]) -> list[str]:
    """The text summary's lines for failed partitions (none when nothing failed)."""
    failed = summary.get("failed_partitions") or {}
    if not failed:
        return []
    retry = failed["retry"]
    lines = [f"  not materialized: {len(failed['days'])} day(s) {failed['ranges']}"]
    lines += [f"    {asset}: {ranges}" for asset, ranges in failed["by_asset"].items()]
    lines.append(f"    retry: the same command with --start {retry['start']} --end {retry['end']}")
    return lines
