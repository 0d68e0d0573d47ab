"""Sensors and schedules evaluated on a real instance (build_sensor_context /
build_schedule_context), and the runs they request executed for real."""

from __future__ import annotations

import datetime as dt
import os
import time

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config import load_config
from ml_assets.definitions import build_definitions
from ml_assets.defs.names import PipelineNames
from ml_assets.defs.resources import AlertsResource
from ml_assets_tests.helpers import (
    checks_by_name,
    materializations,
    materialize,
    rentals_dict,
    rentals_frame,
    step_errors,
    write_config,
    write_rentals,
)

NAMES = PipelineNames("rentals")


def shifted(day: dt.date, rows: int, seed: int) -> pd.DataFrame:
    """A day whose inputs moved: longer rides, warmer, everyone at the harbor."""
    frame = rentals_frame(day, rows, seed)
    frame["distance_km"] = (frame["distance_km"].astype(float) * 3).round(3).astype(str)
    frame["temperature_c"] = (frame["temperature_c"].astype(float) + 12).clip(upper=49).astype(str)
    frame["station"] = "harbor"
    return frame


@pytest.fixture
def landing(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    folder = tmp_path / "landing"
    write_rentals(folder, dt.date(2024, 3, 1), days=10, rows=300)
    cfg = load_config(write_config(tmp_path / "rentals.yaml", rentals_dict(
        str(folder / "{date}.csv"), automation={"cooldown_seconds": 0})))
    return folder, cfg


def _defs(cfg, storage, alerts=None):
    return build_definitions([cfg], storage=storage, alerts=alerts or AlertsResource())


def _sensor(defs, name):
    return defs.resolve_sensor_def(name)


@pytest.mark.parametrize("form", ["date", "glob"])
def test_a_new_file_whose_days_are_outside_the_partitions_is_said_so(tmp_path, storage, instance,
                                                                     form):
    """Not 'already materialized': the sensor says the file's days are outside the partitions."""
    folder = tmp_path / "landing"
    folder.mkdir()
    rentals_frame(dt.date(2023, 12, 1), 5, seed=1).to_csv(folder / "2023-12-01.csv", index=False)
    uri = str(folder / ("{date}.csv" if form == "date" else "*.csv"))
    cfg = load_config(write_config(tmp_path / "rentals.yaml", rentals_dict(uri)))
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    result = _sensor(_defs(cfg, storage), NAMES.new_data_sensor).evaluate_tick(ctx)
    assert not result.run_requests
    assert "2023-12-01.csv: its day(s) 2023-12-01 are outside the pipeline's partitions " \
           "(2024-03-01..2024-03-15, end exclusive)" in result.skip_message, result.skip_message
    assert "already materialized" not in result.skip_message
    # only a glob source's raw step looks at such a file (readable_files reports it)
    assert ("readable_files" in result.skip_message) == (form == "glob")


def test_a_dated_file_whose_name_is_no_calendar_day_is_said_so(tmp_path, storage, instance):
    folder = tmp_path / "landing"
    folder.mkdir()
    rentals_frame(dt.date(2024, 3, 1), 5, seed=1).to_csv(folder / "2024-02-30.csv", index=False)
    cfg = load_config(write_config(tmp_path / "rentals.yaml", rentals_dict(str(folder / "{date}.csv"))))
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    result = _sensor(_defs(cfg, storage), NAMES.new_data_sensor).evaluate_tick(ctx)
    assert not result.run_requests
    assert "2024-02-30.csv: its name's date is not a calendar day" in result.skip_message, \
        result.skip_message


@pytest.mark.slow
def test_new_data_then_drift_then_one_retrain(landing, storage, instance, webhook):
    folder, cfg = landing
    alerts = AlertsResource(webhook_url=webhook.url)
    defs = _defs(cfg, storage, alerts)
    first = materialize(cfg, storage, instance, "2024-03-01", "2024-03-10", as_of="2024-03-10",
                        alerts=alerts)
    assert first.success, step_errors(first)
    new_data = _sensor(defs, NAMES.new_data_sensor)
    retrain = _sensor(defs, NAMES.drift_retrain_sensor)

    # files already ingested: nothing to do, and the cursor remembers them
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    result = new_data.evaluate_tick(ctx)
    assert not result.run_requests and "already materialized" in result.skip_message
    cursor = result.cursor

    # a new stable day and a shifted day arrive (copies; nothing is edited in place)
    rentals_frame(dt.date(2024, 3, 11), 300, seed=11).to_csv(folder / "2024-03-11.csv", index=False)
    shifted(dt.date(2024, 3, 12), 300, seed=12).to_csv(folder / "2024-03-12.csv", index=False)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
    result = new_data.evaluate_tick(ctx)
    [request] = result.run_requests
    assert request.tags["ml_assets/trigger"] == "new_data"
    assert request.tags["dagster/asset_partition_range_start"] == "2024-03-11"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-03-12"
    assert request.tags["ml_assets/partition"] == "2024-03-12"
    assert request.run_key.startswith("new_data:")
    # the same files again, with the requested run queued (as the daemon queues it before the
    # next tick): no new request
    daily = defs.resolve_job_def(NAMES.daily_job)
    queued = instance.create_run_for_job(daily, tags=request.tags)
    again = new_data.evaluate_tick(dg.build_sensor_context(
        instance=instance, cursor=result.cursor, resources={"storage": storage}))
    assert not again.run_requests
    instance.report_run_canceled(queued)

    # run what the sensor asked for, as the daemon would
    run = daily.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    assert run.success, step_errors(run)
    drift = checks_by_name(run)["drift.feature_drift"]
    assert drift.metadata["level"].value == "ERROR"
    assert drift.metadata["error_days"].value == "2024-03-12"
    # the days the result covers: only a result reaching an episode's newest ERROR day ends it
    assert (drift.metadata["first_day"].value, drift.metadata["last_day"].value) == (
        "2024-03-11", "2024-03-12")
    assert "distance_km" in drift.metadata["drifted_columns"].value
    assert drift.severity == dg.AssetCheckSeverity.ERROR
    assert "drift" in webhook.events()
    day11 = materializations(run, "drift")["2024-03-11"].metadata
    assert day11["level"].value == "OK" and isinstance(day11["drift_share"].value, float)

    # while that run is still going its check results are not read (all of a run's monitoring
    # checks are read in one tick, so they make one plan)
    from ml_assets.defs.automation import monitoring_evaluations
    from ml_assets.defs.spec import PipelineSpec

    class Running:  # the same instance, seen while that run is still going
        def __init__(self, inner, run_id):
            self.inner, self.run_id = inner, run_id

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def get_run_by_id(self, run_id):
            found = self.inner.get_run_by_id(run_id)
            return found.with_status(dg.DagsterRunStatus.STARTED) if run_id == self.run_id else found

    spec = PipelineSpec(cfg)
    read = {e.check for e in monitoring_evaluations(instance, spec) if e.run_id == run.run_id}
    assert read == {"feature_drift", "prediction_drift", "model_performance"}
    assert [e for e in monitoring_evaluations(Running(instance, run.run_id), spec)
            if e.run_id == run.run_id] == []

    # the retrain sensor reads the stored result: one run for the episode
    tick = retrain.evaluate_tick(dg.build_sensor_context(instance=instance))
    [retrain_request] = tick.run_requests
    tags = retrain_request.tags
    assert tags["ml_assets/trigger"] == "drift" and tags["ml_assets/pipeline"] == "rentals"
    assert tags["ml_assets/partition"] == "2024-03-12"
    assert float(tags["ml_assets/drift_share"]) >= 0.5
    assert retrain_request.run_config["ops"][NAMES.model_op]["config"]["as_of"] == "2024-03-12"
    assert retrain_request.run_key.endswith(":2024-03-12:2024-03-12")  # first day, as_of
    second = retrain.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor))
    assert not second.run_requests and "no new monitoring check results" in second.skip_message \
        or "already have their retrain" in second.skip_message

    # the daemon launches it (a run of this sensor with the run key); then the cursor is lost
    # (another version's): the same episode as of the same day is planned again, but Dagster
    # would skip a request with a used key, so the sensor makes none and says so
    @dg.op
    def launched():
        return None

    @dg.job
    def stand_in():
        launched()

    stand_in.execute_in_process(instance=instance, tags={
        "dagster/run_key": retrain_request.run_key,
        "dagster/sensor_name": NAMES.drift_retrain_sensor})
    lost = retrain.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not lost.run_requests
    assert f"already retrained for this episode (run key {retrain_request.run_key})" \
        in lost.skip_message, lost.skip_message

    # the retrain run: a challenger decided against the champion, audited; days re-scored
    job = defs.resolve_job_def(NAMES.retrain_job)
    retrained = job.execute_in_process(instance=instance, tags=tags,
                                       run_config=retrain_request.run_config, raise_on_error=False)
    assert retrained.success or "gate" in step_errors(retrained), step_errors(retrained)
    audit = storage.models().audit("rentals")
    assert audit[-1]["action"] in ("promote", "reject")
    assert audit[-1]["details"]["trigger"] == "drift"
    assert audit[-1]["actor"] == "dagster:ui-or-api" or audit[-1]["actor"].startswith("sensor:")


# ---------------------------------------------------------------- orphan days
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture
def with_a_bad_day(tmp_path, monkeypatch):
    """Good 2024-03-11 and 2024-03-12 land with a 2024-03-13 that misses a required column."""
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    folder = tmp_path / "landing"
    folder.mkdir()
    for day in (11, 12):
        rentals_frame(dt.date(2024, 3, day), 60, seed=day).to_csv(folder / f"2024-03-{day}.csv",
                                                                  index=False)
    bad = rentals_frame(dt.date(2024, 3, 13), 60, seed=13).drop(columns=["station"])
    bad.to_csv(folder / "2024-03-13.csv", index=False)
    cfg = load_config(write_config(tmp_path / "rentals.yaml",
                                   rentals_dict(str(folder / "{date}.csv"))))
    return folder, cfg


def _tick(defs, instance, storage, cursor=None):
    return _sensor(defs, NAMES.new_data_sensor).evaluate_tick(dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}))


def _run_raw(cfg, storage, instance, request):
    """Raw for the request's days, with its tags (as the daemon would launch it)."""
    return materialize(cfg, storage, instance, request.tags[RANGE_START], request.tags[RANGE_END],
                       layers=["raw"], tags=request.tags)


def _spans(requests):
    return sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests)


def _raw_days(instance):
    return sorted(instance.get_materialized_partitions(NAMES.raw))


def _first_tick_fails(cfg, storage, instance):
    defs = _defs(cfg, storage)
    first = _tick(defs, instance, storage)
    [request] = first.run_requests
    assert _spans([request]) == [("2024-03-11", "2024-03-13")]
    run = _run_raw(cfg, storage, instance, request)
    assert not run.success and "2024-03-13" in step_errors(run)
    assert _raw_days(instance) == []  # the blocked day stopped the whole run
    return defs, first


@pytest.mark.slow
def test_fixing_the_bad_file_gets_the_good_days_of_its_failed_run_ingested(
        with_a_bad_day, storage, instance):
    folder, cfg = with_a_bad_day
    defs, first = _first_tick_fails(cfg, storage, instance)
    rentals_frame(dt.date(2024, 3, 13), 70, seed=13).to_csv(folder / "2024-03-13.csv", index=False)
    second = _tick(defs, instance, storage, first.cursor)
    # the fixed day (its file changed) and each good day of the failed run, on its own
    assert _spans(second.run_requests) == [("2024-03-11", "2024-03-11"),
                                           ("2024-03-12", "2024-03-12"),
                                           ("2024-03-13", "2024-03-13")]
    assert len({r.run_key for r in second.run_requests}) == 3
    assert first.run_requests[0].run_key not in {r.run_key for r in second.run_requests}
    for request in second.run_requests:
        assert request.tags["ml_assets/trigger"] == "new_data"
        assert request.tags["ml_assets/pipeline"] == "rentals"
        assert request.run_key.startswith("new_data:")
        assert _run_raw(cfg, storage, instance, request).success
    assert _raw_days(instance) == ["2024-03-11", "2024-03-12", "2024-03-13"]
    third = _tick(defs, instance, storage, second.cursor)
    assert not third.run_requests and "no new or changed file" in third.skip_message


@pytest.mark.slow
def test_a_bad_file_blocks_only_its_day_and_is_tried_once_per_version(with_a_bad_day, storage,
                                                                      instance):
    folder, cfg = with_a_bad_day
    defs, first = _first_tick_fails(cfg, storage, instance)
    # nothing changed: the days of the failed run are requested again, one run each
    second = _tick(defs, instance, storage, first.cursor)
    assert _spans(second.run_requests) == [("2024-03-11", "2024-03-11"),
                                           ("2024-03-12", "2024-03-12"),
                                           ("2024-03-13", "2024-03-13")]
    ran = {r.tags[RANGE_START]: _run_raw(cfg, storage, instance, r).success
           for r in second.run_requests}
    assert ran == {"2024-03-11": True, "2024-03-12": True, "2024-03-13": False}
    # the bad day is not retried while its file is the same
    third = _tick(defs, instance, storage, second.cursor)
    assert not third.run_requests, _spans(third.run_requests)
    assert "2024-03-13 still not materialized" in third.skip_message, third.skip_message
    # a new day is not blocked by it
    rentals_frame(dt.date(2024, 3, 14), 60, seed=14).to_csv(folder / "2024-03-14.csv", index=False)
    fourth = _tick(defs, instance, storage, third.cursor)
    [new] = fourth.run_requests
    assert _spans([new]) == [("2024-03-14", "2024-03-14")]
    assert _run_raw(cfg, storage, instance, new).success
    assert _raw_days(instance) == ["2024-03-11", "2024-03-12", "2024-03-14"]
    # its file fixed: the bad day is requested again
    rentals_frame(dt.date(2024, 3, 13), 70, seed=13).to_csv(folder / "2024-03-13.csv", index=False)
    fifth = _tick(defs, instance, storage, fourth.cursor)
    assert _spans(fifth.run_requests) == [("2024-03-13", "2024-03-13")]


def test_a_day_a_queued_run_covers_is_not_requested_again(with_a_bad_day, storage, instance):
    _, cfg = with_a_bad_day
    defs = _defs(cfg, storage)
    first = _tick(defs, instance, storage)
    [request] = first.run_requests
    # the daemon queued the requested run; it has not started
    queued = instance.create_run_for_job(defs.resolve_job_def(NAMES.daily_job), tags=request.tags)
    second = _tick(defs, instance, storage, first.cursor)
    assert not second.run_requests, _spans(second.run_requests)
    assert "day(s) 2024-03-11, 2024-03-12, 2024-03-13 not materialized yet: a queued or " \
           "in-progress run covers them" in second.skip_message, second.skip_message
    instance.report_run_canceled(queued)  # it ended without materializing them
    third = _tick(defs, instance, storage, second.cursor)
    assert _spans(third.run_requests) == [("2024-03-11", "2024-03-11"),
                                          ("2024-03-12", "2024-03-12"),
                                          ("2024-03-13", "2024-03-13")]


def test_run_failure_sensor_alerts_and_never_fails_on_a_dead_webhook(landing, storage, instance, webhook):
    folder, cfg = landing
    (folder / "2024-03-05.csv").unlink()  # a missing day file: the raw step fails
    for url in (webhook.url, "http://127.0.0.1:9/nothing-listens-here"):
        defs = _defs(cfg, storage, AlertsResource(webhook_url=url, timeout_seconds=1))
        run = defs.resolve_job_def(NAMES.daily_job).execute_in_process(
            instance=instance, tags={"dagster/asset_partition_range_start": "2024-03-04",
                                     "dagster/asset_partition_range_end": "2024-03-06"},
            raise_on_error=False)
        assert not run.success
        sensor = defs.resolve_sensor_def(NAMES.run_failure_sensor)
        record = instance.get_run_record_by_id(run.run_id)
        failure = next(e for e in instance.all_logs(run.run_id)
                       if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE)
        ctx = dg.build_run_status_sensor_context(
            sensor_name=NAMES.run_failure_sensor, dagster_instance=instance,
            dagster_run=record.dagster_run, dagster_event=failure.dagster_event,
            resources={"alerts": AlertsResource(webhook_url=url, timeout_seconds=1)},
        ).for_run_failure()
        sensor(ctx)  # a dead webhook is logged, never raised
    [alert] = [r for r in webhook.received if r["ml_assets"]["event"] == "run_failure"]
    assert alert["ml_assets"]["pipeline"] == "rentals" and "failed" in alert["text"]


def test_daily_and_retrain_schedules(landing, storage, instance):
    folder, cfg = landing
    defs = _defs(cfg, storage)
    daily = defs.resolve_schedule_def(NAMES.daily_schedule)
    when = dt.datetime(2024, 4, 2, 6, tzinfo=dt.UTC)
    [request] = daily.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when)).run_requests
    assert request.tags["ml_assets/partition"] == "2024-03-01"  # nothing ingested yet: the first day
    assert request.tags["ml_assets/trigger"] == "schedule"
    assert materialize(cfg, storage, instance, "2024-03-01", "2024-03-03",
                       layers=["raw", "processed", "quarantine", "features"]).success
    [request] = daily.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when)).run_requests
    assert request.tags["ml_assets/partition"] == "2024-03-04"
    retrain = defs.resolve_schedule_def(NAMES.retrain_schedule)
    [request] = retrain.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when)).run_requests
    assert request.run_config["ops"][NAMES.model_op]["config"]["as_of"] == "2024-03-03"
    assert request.tags["ml_assets/trigger"] == "schedule"


def test_served_predictions_schedule_collects_yesterday_inside_the_partitions(landing, storage,
                                                                            instance):
    _, cfg = landing
    schedule = _defs(cfg, storage).resolve_schedule_def(NAMES.served_schedule)
    [request] = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=dt.datetime(2024, 3, 6, 0, 15, tzinfo=dt.UTC))
    ).run_requests
    assert request.tags["ml_assets/partition"] == "2024-03-05"
    outside = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=dt.datetime(2030, 1, 2, 0, 15, tzinfo=dt.UTC)))
    assert not outside.run_requests and "2030-01-01 is not a partition" in outside.skip_message


def test_every_sensor_and_schedule_starts_running(landing, storage):
    _, cfg = landing
    defs = _defs(cfg, storage)
    for sensor in defs.sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
    assert defs.resolve_sensor_def(NAMES.drift_retrain_sensor).minimum_interval_seconds == 60


def test_sensor_interval_comes_from_config(tmp_path, storage):
    cfg = load_config(write_config(tmp_path / "r.yaml", rentals_dict(
        str(tmp_path / "{date}.csv"), automation={"sensor_interval_seconds": 7,
                                                   "daily_cron": None, "served_cron": None})))
    defs = _defs(cfg, storage)
    assert defs.resolve_sensor_def(NAMES.drift_retrain_sensor).minimum_interval_seconds == 7
    assert [s.name for s in defs.schedules] == [NAMES.retrain_schedule]
    _ = (os, time)
