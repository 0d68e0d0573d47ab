"""`make drift-demo`: the closed loop on real seasonal drift, under the Dagster daemon.

1. A flights model is trained on winter (2013-01-01..03-31) and becomes production.
2. The Dagster daemon starts: every sensor and schedule of the code location is RUNNING.
3. Summer arrives (2013-06-01..07-15): ingested, scored and monitored by the daily job. Drift is
   real: temperature and dew point move by 3 to 7 winter standard deviations.
4. The drift-retrain sensor reads the stored ERROR and launches one retrain run by itself; a
   challenger is trained as of the newest drifted day and compared with the winter champion on
   the challenger's validation days; it is promoted or rejected, with an audit entry and alerts.
5. More summer days arrive; their predictions carry production's version.

State lives in `.drift_demo/` (wiped at the start), so the demo is the same every time; explore it
afterwards with `make drift-ui`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("DRIFT_DEMO_DIR", ".drift_demo")).resolve()
WINTER = (dt.date(2013, 1, 1), dt.date(2013, 4, 1), dt.date(2013, 3, 31))
SUMMER = (dt.date(2013, 6, 1), dt.date(2013, 7, 16))
LATER = (dt.date(2013, 7, 16), dt.date(2013, 7, 22))
WAIT_S = 600


def say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n{text}" if text else ""), flush=True)


def _prepare() -> Path:
    if STATE.exists():
        shutil.rmtree(STATE)
    home = STATE / "dagster_home"
    home.mkdir(parents=True)
    os.environ.update({"DAGSTER_HOME": str(home), "DATA_PATH": str(STATE / "tables"),
                       "MODEL_PATH": str(STATE / "models"), "ENV": "development"})
    os.environ.pop("S3_BUCKET", None)
    from ml_assets.instance import init_instance

    init_instance(home)
    workspace = STATE / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: ml_assets.definitions\n"
                         "      location_name: ml_assets\n")
    return workspace


def _daily(cfg, start: dt.date, end: dt.date, instance):
    """Run the daily job (ingest -> predictions -> monitoring) for [start, end) in-process."""
    from ml_assets.definitions import build_definitions
    from ml_assets.defs.names import TAG_PIPELINE, TAG_TRIGGER, PipelineNames, range_tags

    names = PipelineNames(cfg.name)
    job = build_definitions([cfg]).resolve_job_def(names.daily_job)
    last = (end - dt.timedelta(days=1)).isoformat()
    return job.execute_in_process(
        instance=instance, raise_on_error=False,
        tags={**range_tags(start.isoformat(), last), TAG_TRIGGER: "new_data", TAG_PIPELINE: cfg.name},
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})


def _check(result, name: str) -> dict:
    for ev in result.get_asset_check_evaluations():
        if ev.check_name == name:
            return {k: v.value for k, v in ev.metadata.items()}
    return {}


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    workspace = _prepare()
    import dagster as dg

    from ml_assets.config import load_configs
    from ml_assets.core.registry import ModelStore
    from ml_assets.core.storage import LocalStore
    from ml_assets.defs.names import TAG_TRIGGER, PipelineNames
    from ml_assets.environment import apply_dagster_event_settings
    from ml_assets.runner import run_pipeline

    apply_dagster_event_settings()  # for this process and the daemon it starts below
    [cfg] = [c for c in load_configs() if c.name == "flights"]
    names = PipelineNames(cfg.name)
    models = ModelStore(LocalStore(os.environ["MODEL_PATH"]))
    say("1. Winter: train on 2013-01-01..03-31 (ml-assets run)")
    with dg.DagsterInstance.get() as instance:
        summary = run_pipeline(cfg, *WINTER, instance=instance, log_level="ERROR")
        p = summary["production"]
        print(f"   model {summary['model']['version']} roc_auc "
              f"{summary['model']['metrics']['roc_auc']:.3f}; production: {p['model_version']} "
              f"({p['action']}: {p['reason']})")
        if not summary["success"] or p.get("action") != "promote":
            print("   the winter model did not become production; stopping", file=sys.stderr)
            return 1

    say("2. Start the Dagster daemon (sensors and schedules RUNNING by default)")
    log = open(STATE / "daemon.log", "w")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run",
                               "-w", str(workspace)], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    print(f"   dagster-daemon pid {daemon.pid}; log {STATE / 'daemon.log'}")
    try:
        with dg.DagsterInstance.get() as instance:
            say("3. Summer arrives: 2013-06-01..07-15 (daily job: ingest, score, monitor)")
            summer = _daily(cfg, *SUMMER, instance)
            drift = _check(summer, "feature_drift")
            print(f"   feature_drift {drift.get('level')}: share {drift.get('drift_share')} on "
                  f"{drift.get('worst_day')} ({drift.get('drifted_columns')}); "
                  f"ERROR days: {len(drift.get('error_days', '').split(','))}")
            for day in ("2013-06-03", "2013-07-10"):
                rec = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=names.drift, asset_partitions=[day]), limit=1).records
                if rec:
                    meta = rec[0].asset_materialization.metadata
                    print(f"   {day}: temp {meta['score_temp'].value:.2f}, dewp "
                          f"{meta['score_dewp'].value:.2f} (winter std units; threshold "
                          f"{cfg.drift.numeric_threshold}) -> {meta['level'].value}")

            say(f"4. The drift sensor acts by itself (checks every "
                f"{cfg.automation.sensor_interval_seconds} s)")
            start = time.monotonic()
            runs = []
            while time.monotonic() - start < WAIT_S:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={TAG_TRIGGER: "drift"}))
                if runs and all(r.is_finished for r in runs):
                    break
                time.sleep(3)
            if not runs:
                print("   no retrain run within the wait; see the daemon log", file=sys.stderr)
                return 1
            run = runs[0]
            print(f"   run {run.run_id[:8]} of {run.job_name} launched by "
                  f"{run.tags.get('dagster/sensor_name')}: trigger={run.tags.get(TAG_TRIGGER)} "
                  f"as_of={run.tags.get('ml_assets/partition')} drift_share="
                  f"{run.tags.get('ml_assets/drift_share')} -> {run.status.value}")
            decision = [e for e in models.audit(cfg.name) if e["run_id"] == run.run_id
                        and e["action"] in ("promote", "reject")]
            for e in decision:
                print(f"   {e['action'].upper()}: {e['reason']}")

            say("5. More summer days: 2013-07-16..07-21 are scored by production")
            later = _daily(cfg, *LATER, instance)
            versions = set()
            for event in later.get_asset_materialization_events():
                mat = event.materialization
                if mat.asset_key == names.predictions:
                    import pandas as pd

                    frame = pd.read_parquet(mat.metadata["dagster/uri"].value)
                    versions |= set(frame["model_version"])
            production = models.aliases(cfg.name).aliases.get("production", {})
            print(f"   predictions made by {sorted(versions)}; production is "
                  f"{production.get('version')} ({production.get('model_id')})")

        say("Audit log (ml-assets models audit)")
        for e in models.audit(cfg.name):
            print(f"   {e['time'][:19]} {e['action']:<8} {e.get('from_version') or '-':>7} -> "
                  f"{e.get('to_version') or '-':<7} {e['actor']:<40} {e['reason'][:90]}")
        say("Explore it", f"   make drift-ui   (Dagster UI on this demo's instance, {STATE})")
        return 0
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
