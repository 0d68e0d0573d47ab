"""Automation that runs by itself (every sensor and schedule starts RUNNING):

- `<name>_drift_retrain_sensor` reads the stored monitoring check results (it never recomputes
  drift) and requests one retrain run per drift episode, with a cooldown;
- `<name>_new_data_sensor` (files sources) notices new or changed landing files and requests
  raw -> ... -> monitoring for the days they touch: for a glob source, the days the file's new
  version holds and the days its previous version held (from the file manifest), and only those;
  and, every tick, each *orphan* day (a seen file's day that raw has not materialized and no
  unfinished run covers, e.g. a good day of a run a blocked day stopped) as a run of its own,
  once per (day, file versions);
- `<name>_daily_schedule` materializes the next day not yet ingested (for nycflights13 it plays
  the daily extract); `<name>_retrain_schedule` retrains periodically;
  `<name>_served_predictions_schedule` collects yesterday's served predictions;
- `<name>_run_failure_sensor` alerts on a failed run of the pipeline.

Every run they launch carries `ml_assets/trigger`, `ml_assets/pipeline`, `ml_assets/partition`
(and `ml_assets/drift_share` for drift).

Declarative automation (`AutomationCondition`) is not used: a retrain needs run config (`as_of`),
a partition range, tags naming the trigger and a cooldown, which a hand-written sensor states
directly and a condition cannot.
"""

import contextlib
import datetime as dt
import json
import time
from typing import Any

import dagster as dg

from ml_assets.config import FilesSource
from ml_assets.core.alerts import Alert
from ml_assets.core.automation import (
    Evaluation,
    OrphanPlan,
    RetrainCursor,
    days_between,
    new_data_run_key,
    orphan_days,
    plan_orphans,
    plan_retrain,
)
from ml_assets.core.days import contiguous_ranges, ranges_text
from ml_assets.core.landing import LandingFile, held_days, list_landing, touched_days
from ml_assets.defs.lifecycle import MODEL_ID, latest_recorded
from ml_assets.defs.names import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    TAG_DRIFT_SHARE,
    TAG_PARTITION,
    TAG_PIPELINE,
    TAG_RUN_KEY,
    TAG_TRIGGER,
    range_tags,
)
from ml_assets.defs.resources import AlertsResource, StorageResource
from ml_assets.defs.spec import PipelineSpec

RUNNING = dg.DefaultSensorStatus.RUNNING


# ---------------------------------------------------------------- reading the instance
def monitoring_evaluations(instance: dg.DagsterInstance, spec: PipelineSpec) -> list[Evaluation]:
    """The newest stored result of each monitoring check, once the run that stored it has
    finished (so a run's checks are read together, in one tick).

    Only the newest per check: Dagster's default SQLite event log is sharded per run and cannot
    be read as one stream after a cursor, so two results of the same check stored between two
    ticks are read as the newer one (an ERROR followed by an OK before the tick is the end of a
    drift, not a drift).
    """
    names = spec.names
    out: list[Evaluation] = []
    finished: dict[str, bool] = {}
    covered: dict[str, tuple[str, str] | None] = {}
    for key, check in ((names.drift, "feature_drift"), (names.drift, "prediction_drift"),
                       (names.model_performance, "model_performance")):
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(key, check))
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is None:
            continue
        # a run's checks are read once the run has finished, all in the same tick: a tick in
        # the middle of it would see model_performance before feature_drift and plan twice
        if record.run_id not in finished:
            run = instance.get_run_by_id(record.run_id)
            finished[record.run_id] = run is None or run.is_finished
            covered[record.run_id] = _run_days(run)
        if not finished[record.run_id]:
            continue
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        out.append(Evaluation.from_metadata(record.id, record.run_id, check, meta,
                                            covered[record.run_id]))
    return sorted(out, key=lambda e: e.storage_id)


def _run_days(run: dg.DagsterRun | None) -> tuple[str, str] | None:
    """The partition range a run covered, from its tags (for check results stored without
    `first_day`/`last_day` metadata)."""
    if run is None:
        return None
    tags = run.tags
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    day = tags.get(PARTITION_TAG)
    return (day, day) if day else None


def newest_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    keys = instance.get_materialized_partitions(key)
    return max(keys) if keys else None


def materialized_at(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]
                    ) -> dict[str, float]:
    """When each partition was last materialized (POSIX seconds); unmaterialized ones absent."""
    found: dict[str, float] = {}
    wanted = sorted(set(partitions))
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=chunk), limit=len(chunk) * 4)
        for record in result.records:
            mat = record.asset_materialization
            if mat is not None and mat.partition not in found:
                found[mat.partition] = record.timestamp
    return found


#: The statuses of a run that has not finished (queued, about to start, running, cancelling).
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING]


def days_in_flight(instance: dg.DagsterInstance, spec: PipelineSpec) -> set[str]:
    """The days covered by the runs of this pipeline (its tag, or one of its jobs) that are
    queued or in progress: a range run's days, or a one-partition run's partition."""
    names = spec.names
    jobs = {names.pipeline_job, names.daily_job}
    out: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        if run.tags.get(TAG_PIPELINE) != spec.name and run.job_name not in jobs:
            continue
        start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
        if start and end:
            with contextlib.suppress(ValueError):  # a range that is not of days: no day
                out.update(days_between(dt.date.fromisoformat(start), dt.date.fromisoformat(end)))
        elif run.tags.get(PARTITION_TAG):
            out.add(run.tags[PARTITION_TAG])
    return out


def used_run_keys(instance: dg.DagsterInstance, keys: list[str]) -> set[str]:
    """Those of `keys` that a run in the instance already carries (tag `ml_assets/run_key`)."""
    used: set[str] = set()
    for i in range(0, len(keys), 200):
        chunk = keys[i:i + 200]
        for run in instance.get_runs(filters=dg.RunsFilter(tags={TAG_RUN_KEY: chunk})):
            used.add(run.tags[TAG_RUN_KEY])
    return used


def orphan_plan(instance: dg.DagsterInstance, spec: PipelineSpec, files: list[LandingFile],
                seen: dict[str, str], valid: set[str], requested_now: set[str],
                store: Any = None) -> OrphanPlan:
    """The new-data sensor's orphan days (`core.automation.orphan_days`) and which of them to
    request now: read from the instance (raw's materialized partitions, the runs not finished,
    the run keys used) and the landing files the cursor has seen in their current version."""
    none = OrphanPlan([], [], [])
    held_files = [f for f in files if seen.get(f.uri) == f.version]
    if not held_files:
        return none
    done = instance.get_materialized_partitions(spec.names.raw)
    if valid <= done | requested_now:
        return none  # every partition is materialized or requested: no orphan can exist
    held = held_days(spec.cfg, held_files, store)
    orphans = orphan_days(held, {f.uri: f.version for f in held_files}, valid, done, requested_now)
    if not orphans:
        return none
    return plan_orphans(orphans, days_in_flight(instance, spec),
                        used_run_keys(instance, [o.run_key for o in orphans]))


def _remember(seen: dict[str, str], file: LandingFile) -> None:
    """The sensor's cursor: the version of each landing file it has handled (a removed file is
    forgotten once its days are requested)."""
    if file.version.startswith("removed@"):
        seen.pop(file.uri, None)
    else:
        seen[file.uri] = file.version


def _tags(spec: PipelineSpec, trigger: str, partition: str, start: str, end: str) -> dict[str, str]:
    return {TAG_TRIGGER: trigger, TAG_PIPELINE: spec.name, TAG_PARTITION: partition,
            **range_tags(start, end)}


# ---------------------------------------------------------------- definitions
def build(spec: PipelineSpec, jobs: dict[str, Any]
          ) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    cfg, names = spec.cfg, spec.names
    auto = cfg.automation
    daily_job, retrain_job = jobs["daily"], jobs["retrain"]

    @dg.sensor(
        name=names.drift_retrain_sensor, job=retrain_job, default_status=RUNNING,
        minimum_interval_seconds=auto.sensor_interval_seconds,
        description=(f"{cfg.name}: on a new ERROR-level failure of feature_drift, prediction_drift "
                     "or model_performance, request one retrain run per drift episode "
                     f"(cooldown {auto.cooldown_seconds} s). Reads stored check results only."),
    )
    def drift_retrain_sensor(context: dg.SensorEvaluationContext):
        cursor = RetrainCursor.from_json(context.cursor)
        evaluations = [e for e in monitoring_evaluations(context.instance, spec)
                       if cursor.is_new(e.check, e.storage_id)]
        recorded = latest_recorded(context.instance, names.production_model) or {}

        def run_key_used(run_key: str) -> bool:
            # as the daemon decides to skip a request: a run of this sensor with this key
            return bool(context.instance.get_runs(filters=dg.RunsFilter(tags={
                RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: names.drift_retrain_sensor}), limit=1))

        cursor, request, notes = plan_retrain(
            cursor, evaluations, recorded.get(MODEL_ID), newest_partition(context.instance,
                                                                          names.features),
            time.time(), auto.cooldown_seconds, run_key_used)
        context.update_cursor(cursor.to_json())
        for note in notes:
            context.log.info(note)
        if request is None:
            return dg.SkipReason("; ".join(notes))
        tags = _tags(spec, request.trigger, request.as_of, request.start, request.end)
        if request.drift_share is not None:
            tags[TAG_DRIFT_SHARE] = f"{request.drift_share:.4f}"
        return dg.RunRequest(
            run_key=request.run_key, tags=tags,
            run_config={"ops": {names.model_op: {"config": {"as_of": request.as_of}}}})

    sensors: list[dg.SensorDefinition] = [drift_retrain_sensor]

    if isinstance(cfg.source, FilesSource) and auto.new_data_sensor:
        source = cfg.source

        @dg.sensor(
            name=names.new_data_sensor, job=daily_job, default_status=RUNNING,
            minimum_interval_seconds=auto.sensor_interval_seconds,
            description=(f"{cfg.name}: new or changed files matching {source.uri} start "
                         "raw -> ... -> monitoring for the days they hold."),
        )
        def new_data_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
            seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
            client = storage.client_for(source.uri)
            files = list_landing(source, client)
            valid = set(spec.partition_keys())
            changed = [f for f in files if seen.get(f.uri) != f.version]
            listed = {f.uri for f in files}
            dated = "{date}" in source.uri
            # a glob file that was ingested and is gone: the days it held lose its rows
            removed = [] if dated else [u for u in seen if u not in listed]
            wanted: dict[str, list] = {}
            notes = []
            requests = []
            if not changed and not removed:
                notes.append(f"no new or changed file among {len(files)} matching {source.uri}")
            else:
                wanted = new_files(context, storage, seen, files, changed, removed, valid, client, notes)
                context.update_cursor(json.dumps(seen, sort_keys=True))
            for start, end in contiguous_ranges(list(wanted)):
                files_in = {f.uri: f.version for d, fs in wanted.items() if start <= d <= end
                            for f in fs}
                key = new_data_run_key(files_in)
                requests.append(dg.RunRequest(run_key=key, tags={
                    **_tags(spec, "new_data", end, start, end), TAG_RUN_KEY: key}))
            # orphan days: seen files' days that no run materialized (a run that failed, e.g.
            # on another day's bad file): one run each, once per (day, file versions)
            plan = orphan_plan(context.instance, spec, files, seen, valid, set(wanted),
                               storage.tables() if "{date}" not in source.uri else None)
            for o in plan.requests:
                requests.append(dg.RunRequest(run_key=o.run_key, tags={
                    **_tags(spec, "new_data", o.day, o.day, o.day), TAG_RUN_KEY: o.run_key}))
            notes.extend(plan.notes())
            for note in notes:
                context.log.info(note)
            if not requests:
                return dg.SkipReason("; ".join(notes) or "nothing to ingest")
            return requests

        def new_files(context, storage, seen, files, changed, removed, valid, client, notes
                      ) -> dict[str, list[LandingFile]]:
            """The days new or changed (or removed) files touch that a run must ingest, with
            the files; `seen` (the cursor) remembers the files handled."""
            dated = "{date}" in source.uri
            # the days each changed file touches: for a glob source from the file manifest
            # (refreshed here, reading only new or changed files): its days now and before
            days_of = touched_days(cfg, files, changed, client, storage.tables(), removed)
            gone_at = time.time()
            changed = changed + [LandingFile(u, 0, gone_at, f"removed@{gone_at}") for u in removed]
            touched = sorted({d for days in days_of.values() for d in days})
            done = materialized_at(context.instance, names.raw, touched)
            wanted: dict[str, list] = {}
            for f in changed:
                days = days_of[f.uri]
                if not days:
                    notes.append(f"{f.uri}: its name's date is not a calendar day; a {{date}} "
                                 "source never reads it" if dated else
                                 f"{f.uri}: no known day in it (unreadable, or no usable "
                                 "timestamp, and no date in its name; raw's readable_files "
                                 "check reports it)")
                    _remember(seen, f)
                    continue
                inside = [d for d in days if d in valid]
                later = [d for d in days if d not in valid and d >= spec.cfg.partitions.start.isoformat()
                         and d < spec.cfg.partitions.end.isoformat()]
                if later:  # a day not yet a partition (it has not ended): look again later
                    notes.append(f"{f.uri}: day(s) {', '.join(later)} not yet a partition; waiting")
                    continue
                if not inside:
                    p = spec.cfg.partitions
                    notes.append(f"{f.uri}: its day(s) {ranges_text(days)} are outside the pipeline's "
                                 f"partitions ({p.start}..{p.end}, end exclusive): nothing to "
                                 "ingest" + ("" if dated else " (raw's readable_files reports it)"))
                    _remember(seen, f)
                    continue
                fresh = [d for d in inside if d not in done or done[d] < f.modified]
                if not fresh:
                    notes.append(f"{f.uri}: its day(s) are already materialized from this version")
                for d in fresh:
                    wanted.setdefault(d, []).append(f)
                _remember(seen, f)
            return wanted

        sensors.append(new_data_sensor)

    pipeline_jobs = {names.pipeline_job, names.daily_job, names.retrain_job, names.lifecycle_job}

    @dg.run_failure_sensor(
        name=names.run_failure_sensor, default_status=RUNNING, monitor_all_code_locations=False,
        minimum_interval_seconds=auto.sensor_interval_seconds,
        description=f"{cfg.name}: an alert for every failed run of this pipeline.",
    )
    def run_failure_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource):
        run = context.dagster_run
        selected = run.asset_selection or set()
        if not (run.job_name in pipeline_jobs or run.tags.get(TAG_PIPELINE) == cfg.name
                or any(k.path[0] == cfg.name for k in selected)):
            return
        message = context.failure_event.message or ""
        alerts.send(Alert(
            event="run_failure", pipeline=cfg.name, level="error",
            title=f"run {run.run_id[:8]} of {run.job_name} failed",
            text=message[:1500],
            fields={"run_id": run.run_id, "trigger": run.tags.get(TAG_TRIGGER, "manual"),
                    "partition": run.tags.get(TAG_PARTITION, "")}))

    sensors.append(run_failure_sensor)

    schedules: list[dg.ScheduleDefinition] = []
    if auto.daily_cron:
        @dg.schedule(
            name=names.daily_schedule, job=daily_job, cron_schedule=auto.daily_cron,
            execution_timezone=auto.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(f"{cfg.name}: the daily batch: the next day not yet ingested "
                         "(for nycflights13, the next day of 2013: the daily extract, played)."),
        )
        def daily_schedule(context: dg.ScheduleEvaluationContext):
            keys = spec.partition_keys()
            newest = newest_partition(context.instance, names.raw)
            todo = [k for k in keys if newest is None or k > newest]
            if not todo:
                return dg.SkipReason(f"every partition up to {keys[-1] if keys else '-'} is ingested")
            day = todo[0]
            return dg.RunRequest(run_key=f"daily:{day}", tags=_tags(spec, "schedule", day, day, day))

        schedules.append(daily_schedule)

    if auto.retrain_cron:
        @dg.schedule(
            name=names.retrain_schedule, job=retrain_job, cron_schedule=auto.retrain_cron,
            execution_timezone=auto.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"{cfg.name}: a periodic retrain on the newest window of features.",
        )
        def retrain_schedule(context: dg.ScheduleEvaluationContext):
            newest = newest_partition(context.instance, names.features)
            if newest is None:
                return dg.SkipReason("no features partition is materialized yet")
            stamp = context.scheduled_execution_time.astimezone(dt.UTC).isoformat(timespec="minutes")
            return dg.RunRequest(
                run_key=f"retrain_schedule:{stamp}",
                tags=_tags(spec, "schedule", newest, newest, newest),
                run_config={"ops": {names.model_op: {"config": {"as_of": newest}}}})

        schedules.append(retrain_schedule)

    if auto.served_cron:
        @dg.schedule(
            name=names.served_schedule, job=jobs["serving"], cron_schedule=auto.served_cron,
            execution_timezone=auto.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"{cfg.name}: collect yesterday's served predictions (UTC day).",
        )
        def served_schedule(context: dg.ScheduleEvaluationContext):
            day = (context.scheduled_execution_time.astimezone(dt.UTC).date()
                   - dt.timedelta(days=1)).isoformat()
            if day not in set(spec.partition_keys()):
                return dg.SkipReason(f"{day} is not a partition of {cfg.name} "
                                     f"({cfg.partitions.start}..{cfg.partitions.end}, end "
                                     "exclusive): nothing the API served is collected for it")
            return dg.RunRequest(run_key=f"served:{day}", tags=_tags(spec, "schedule", day, day, day))

        schedules.append(served_schedule)

    return sensors, schedules
