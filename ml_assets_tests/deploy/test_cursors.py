"""Sensors and schedules keep their cursors across a daemon restart, on the production
(PostgreSQL) instance: after a restart the new-data sensor still knows which file versions it has
seen, the retrain sensor which check results it has read, and a schedule's ticks go on from
where they were, without a duplicate.

Skipped without a reachable PostgreSQL on 127.0.0.1:5432; required under CI=true."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import dagster as dg
import pytest

from ml_assets.config import load_config
from ml_assets.runner import run_pipeline
from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import rentals_dict, rentals_frame, write_config, write_rentals

pytestmark = pytest.mark.postgres
NEW_DATA, RETRAIN, DAILY = ("rentals_new_data_sensor", "rentals_drift_retrain_sensor",
                            "rentals_daily_schedule")


def _state(instance, name):
    for state in instance.all_instigator_state():
        if state.instigator_name == name:
            return state
    return None


def _ticks(instance, name):
    state = _state(instance, name)
    if state is None:
        return []
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))


def test_cursors_survive_a_daemon_restart(pg_home, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    write_rentals(landing, dt.date(2024, 3, 1), days=8, rows=200)
    config = write_config(tmp_path / "rentals.yaml", rentals_dict(
        str(landing / "{date}.csv"), start="2024-03-01", end="2024-03-09",
        automation={"sensor_interval_seconds": 5, "daily_cron": "* * * * *",
                    "retrain_cron": None}))
    monkeypatch.setenv("ML_ASSETS_CONFIG", str(config))
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "k")
    cfg = load_config(config)
    with dg.DagsterInstance.get() as instance:
        summary = run_pipeline(cfg, dt.date(2024, 3, 1), dt.date(2024, 3, 9), dt.date(2024, 3, 8),
                               instance=instance, log_level="ERROR")
        assert summary["success"], summary
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: ml_assets.definitions\n"
                         "      location_name: ml_assets\n")

    def daemon(procs, name):
        procs.start(name, [str(services.BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                    tmp_path, cwd=tmp_path, env=dict(os.environ))

    with dg.DagsterInstance.get() as instance:
        with services.processes() as procs:
            daemon(procs, "daemon-1")
            services.wait_for(lambda: len(_ticks(instance, NEW_DATA)) >= 2
                              and len(_ticks(instance, RETRAIN)) >= 2
                              and len(_ticks(instance, DAILY)) >= 1, 150,
                              "the sensors' and the schedule's first ticks",
                              check=lambda: procs.check_alive("daemon-1"))
            seen = json.loads(_state(instance, NEW_DATA).instigator_data.cursor)
            assert len(seen) == 8
            retrain_cursor = json.loads(_state(instance, RETRAIN).instigator_data.cursor)
            assert set(retrain_cursor["seen"]) == {"feature_drift", "prediction_drift",
                                                   "model_performance"}
            schedule_ticks = {t.timestamp for t in _ticks(instance, DAILY)}
        # stopped: the processes context manager stopped the daemon
        stopped_at = time.time()
        rentals_frame(dt.date(2024, 3, 4), 200, seed=99).to_csv(landing / "2024-03-04.csv", index=False)
        with services.processes() as procs:
            daemon(procs, "daemon-2")

            def after_restart(name):
                """The finished ticks after the restart (a tick still being evaluated is
                STARTED: counting it would read its status before the daemon has set it)."""
                return [t for t in _ticks(instance, name)
                        if t.timestamp > stopped_at and t.status.value != "STARTED"]

            services.wait_for(lambda: len(after_restart(NEW_DATA)) >= 2
                              and len(after_restart(RETRAIN)) >= 1, 120,
                              "ticks after the restart", check=lambda: procs.check_alive("daemon-2"))
            # the new-data sensor remembered the 8 file versions: only the changed file is new
            requested = [t for t in after_restart(NEW_DATA) if t.status.value == "SUCCESS"]
            assert len(requested) == 1 and len(requested[0].run_keys) == 1, [
                (t.status, t.skip_reason) for t in after_restart(NEW_DATA)]
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"ml_assets/trigger": "new_data"}))
            assert [r.tags["ml_assets/partition"] for r in runs] == ["2024-03-04"]
            quiet = [t.skip_reason for t in after_restart(NEW_DATA) if t.status.value == "SKIPPED"]
            assert quiet and all("no new or changed file" in r for r in quiet[-1:]), quiet
            # the retrain sensor did not read the old results again (a fresh cursor would say
            # "feature_drift is OK (run ...)" for each of them)
            first = after_restart(RETRAIN)[-1]
            assert first.status.value == "SKIPPED"
            assert first.skip_reason == "no new monitoring check results", first.skip_reason
        # the schedule went on from its stored state: no scheduled time ticked twice
        all_ticks = [t.timestamp for t in _ticks(instance, DAILY)]
        assert schedule_ticks <= set(all_ticks) and len(all_ticks) == len(set(all_ticks))
        assert _state(instance, DAILY).instigator_data.last_iteration_timestamp
