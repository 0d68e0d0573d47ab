"""The production instance on real PostgreSQL (a fresh database per test): the pipeline runs,
two runs at once corrupt nothing and train one at a time, queued runs respect the run
coordinator's limits, and a run whose process is killed is marked failed and retried.

Skipped without a reachable PostgreSQL on 127.0.0.1:5432; required under CI=true."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess

import dagster as dg
import pytest

from ml_assets.runner import run_pipeline
from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import REPO, flights_config, flights_dict, write_config

pytestmark = pytest.mark.postgres

D = dt.date.fromisoformat


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType):
    return [e for e in instance.all_logs(run_id, of_type=kind)]


def test_pipeline_runs_on_postgres(pg_home):
    cfg = flights_config()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        summary = run_pipeline(cfg, D("2013-01-01"), D("2013-01-08"), D("2013-01-07"),
                               instance=instance, log_level="ERROR")
        assert summary["success"], summary["step_failures"] or summary["failed_blocking_checks"]
        assert summary["partitions"]["features"] == 7
        run = instance.get_run_by_id(summary["run_id"])
        assert run.status == dg.DagsterRunStatus.SUCCESS
        key = dg.AssetKey(["flights", "features"])
        assert len(instance.get_materialized_partitions(key)) == 7
        assert summary["model"]["gate_passed"] is True


def _run_cli(config, start, end, as_of, env):
    return subprocess.Popen(
        [str(services.BIN / "ml-assets"), "run", "--config", str(config), "--start", start,
         "--end", end, "--as-of", as_of, "--json", "--log-level", "ERROR"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def test_two_runs_at_once_corrupt_nothing_and_train_one_at_a_time(pg_home, tmp_path):
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    env = dict(os.environ)
    procs = [_run_cli(config, "2013-01-01", "2013-01-08", "2013-01-07", env),
             _run_cli(config, "2013-01-08", "2013-01-15", "2013-01-14", env)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, (err[-2000:], out[-3000:])
            outs.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    with dg.DagsterInstance.get() as instance:
        features = dg.AssetKey(["flights", "features"])
        # every partition of both ranges recorded exactly once, each with its own content hash
        assert sorted(instance.get_materialized_partitions(features)) == [
            (D("2013-01-01") + dt.timedelta(days=i)).isoformat() for i in range(14)]
        windows = []
        for summary in outs:
            run = instance.get_run_by_id(summary["run_id"])
            assert run.status == dg.DagsterRunStatus.SUCCESS
            mats = _events(instance, summary["run_id"], dg.DagsterEventType.ASSET_MATERIALIZATION)
            per_partition = [e.dagster_event.materialization for e in mats
                             if e.dagster_event.materialization.asset_key == features]
            assert len({m.partition for m in per_partition}) == 7
            assert all("content_hash" in m.metadata for m in per_partition)
            # when did this run's model step hold the training pool?
            step = "flights__model"
            start = [e.timestamp for e in _events(instance, summary["run_id"],
                                                  dg.DagsterEventType.STEP_START)
                     if e.step_key == step]
            end = [e.timestamp for e in _events(instance, summary["run_id"],
                                                dg.DagsterEventType.STEP_SUCCESS)
                   if e.step_key == step]
            assert start and end
            windows.append((start[0], end[0]))
        (a0, a1), (b0, b1) = sorted(windows)
        assert a1 <= b0, f"two trainings of one pipeline overlapped: {windows}"
        assert outs[0]["model"]["model_id"] != outs[1]["model"]["model_id"]


WORKSPACE = """\
load_from:
  - python_file:
      relative_path: {file}
      location_name: deploy_test
      working_directory: {dir}
"""

SLOW_DEFS = '''\
import time

import dagster as dg


@dg.asset
def quick():
    time.sleep(3)
    return 1


@dg.asset
def slow():
    time.sleep(600)
    return 1


defs = dg.Definitions(
    assets=[quick, slow],
    jobs=[dg.define_asset_job("quick_job", [quick]), dg.define_asset_job("slow_job", [slow])],
)
'''


@pytest.fixture
def daemon_workspace(pg_home, tmp_path):
    """A small code location (a 3 s asset, a 10 min asset), its workspace, and a daemon on the
    production instance with at most 2 runs in progress."""
    from ml_assets.instance import render

    (pg_home / "dagster.yaml").write_text(render("postgres", max_concurrent_runs=2))
    code = tmp_path / "code"
    code.mkdir()
    (code / "defs.py").write_text(SLOW_DEFS)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(WORKSPACE.format(file=code / "defs.py", dir=code))
    with services.processes() as procs:
        procs.start("daemon", [str(services.BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                    tmp_path, cwd=code, env=dict(os.environ))
        yield workspace, procs


def _launch(workspace, job, tags):
    out = subprocess.run(
        [str(services.BIN / "dagster"), "job", "launch", "-w", str(workspace), "-j", job,
         "--tags", json.dumps(tags)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_queued_runs_respect_the_run_limit_and_the_training_tag_limit(daemon_workspace):
    workspace, procs = daemon_workspace
    tags = [{"ml_assets/training": "flights"}, {"ml_assets/training": "flights"},
            {"ml_assets/training": "rentals"}, {}]
    for t in tags:
        _launch(workspace, "quick_job", t)
    with dg.DagsterInstance.get() as instance:
        def all_done():
            records = instance.get_run_records()
            return len(records) == 4 and all(r.dagster_run.is_finished for r in records) and records

        records = services.wait_for(all_done, 180, "4 queued runs to finish",
                                    check=lambda: procs.check_alive("daemon"))
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        spans = [(r.start_time, r.end_time, r.dagster_run.tags.get("ml_assets/training"))
                 for r in records]
        # never more than 2 in progress at once (max_concurrent_runs: 2)
        for start, _, _ in spans:
            running = [s for s in spans if s[0] <= start < s[1]]
            assert len(running) <= 2, spans
        # the two "flights" training runs never overlapped (tag limit 1 per value)
        (a0, a1, _), (b0, b1, _) = sorted(s for s in spans if s[2] == "flights")
        assert a1 <= b0, spans
        queued = [e for r in records for e in instance.all_logs(
            r.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)]
        assert len(queued) == 4  # every run went through the queue


def test_killed_run_is_marked_failed_and_retried(daemon_workspace):
    workspace, procs = daemon_workspace
    _launch(workspace, "slow_job", {})
    with dg.DagsterInstance.get() as instance:
        def started():
            records = instance.get_run_records()
            if records and records[0].dagster_run.status == dg.DagsterRunStatus.STARTED:
                steps = instance.all_logs(records[0].dagster_run.run_id,
                                          of_type=dg.DagsterEventType.STEP_START)
                return steps and records[0].dagster_run
            return None

        run = services.wait_for(started, 120, "the slow run to start its step",
                                check=lambda: procs.check_alive("daemon"))
        pid = next(e.dagster_event.pid for e in instance.all_logs(run.run_id)
                   if e.dagster_event and e.dagster_event.pid)
        os.kill(pid, signal.SIGKILL)  # the run worker dies without a word
        failed = services.wait_for(
            lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            90, "the killed run to be marked FAILURE")
        assert failed
        retry = services.wait_for(
            lambda: [r for r in instance.get_runs()
                     if r.tags.get("dagster/parent_run_id") == run.run_id],
            90, "the daemon to retry the killed run", check=lambda: procs.check_alive("daemon"))
        assert retry[0].tags.get("dagster/retry_number") == "1"
