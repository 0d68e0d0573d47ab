"""The code location loads, and the asset graph matches its reviewed snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ml_assets.config import load_configs
from ml_assets.definitions import build_definitions
from ml_assets.defs.names import PipelineNames
from ml_assets_tests.helpers import REPO, local_storage

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot(defs: dg.Definitions) -> dict:
    assets, checks = {}, {}
    for assets_def in defs.assets:
        for spec in assets_def.specs:
            key = spec.key.to_user_string()
            assets[key] = {
                "group": spec.group_name,
                "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
                "kinds": sorted(spec.kinds),
                "partitioned": assets_def.partitions_def is not None,
                "backfill_policy": (str(assets_def.backfill_policy.policy_type)
                                    if assets_def.backfill_policy else None),
            }
        for check in assets_def.check_specs:
            checks[f"{check.asset_key.to_user_string()}:{check.name}"] = {"blocking": check.blocking}
    for checks_def in defs.asset_checks or []:
        for check in checks_def.check_specs:
            checks[f"{check.asset_key.to_user_string()}:{check.name}"] = {"blocking": check.blocking}
    jobs = sorted(j.name for j in defs.jobs or [])
    automation = {}
    for sensor in defs.sensors or []:
        automation[sensor.name] = {"kind": "sensor", "default_status": sensor.default_status.value,
                                   "interval_s": sensor.minimum_interval_seconds,
                                   "job": sensor.job_name if sensor.has_jobs else None}
    for schedule in defs.schedules or []:
        automation[schedule.name] = {"kind": "schedule", "default_status": schedule.default_status.value,
                                     "cron": schedule.cron_schedule, "job": schedule.job_name}
    return {"assets": dict(sorted(assets.items())), "checks": dict(sorted(checks.items())),
            "jobs": jobs, "automation": dict(sorted(automation.items()))}


def test_asset_graph_matches_snapshot(tmp_path):
    defs = build_definitions(load_configs(REPO / "ml_assets" / "configs"), storage=local_storage(tmp_path))
    dg.Definitions.validate_loadable(defs)
    current = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the asset graph changed; review the diff and run UPDATE_SNAPSHOTS=1 pytest "
        f"{Path(__file__).name} to accept it"
    )


def test_code_location_loads_from_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "DATA_PATH": str(tmp_path / "d"),
           "MODEL_PATH": str(tmp_path / "m")}
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ml_assets" in proc.stdout + proc.stderr


def test_two_pipelines_share_one_code_location(tmp_path):
    from ml_assets.config import PipelineConfig
    from ml_assets_tests.helpers import rentals_dict

    configs = [*load_configs(REPO / "ml_assets" / "configs"),
               PipelineConfig.model_validate(rentals_dict(str(tmp_path / "{date}.csv")))]
    defs = build_definitions(configs, storage=local_storage(tmp_path))
    dg.Definitions.validate_loadable(defs)
    snapshot = graph_snapshot(defs)
    for name in ("flights", "rentals"):
        names = PipelineNames(name)
        assert {names.pipeline_job, names.lifecycle_job} <= set(snapshot["jobs"])
    assert snapshot["assets"]["rentals/predictions"]["deps"] == ["rentals/features",
                                                           "rentals/production_model"]
    assert "rentals/model:gate_rmse" in snapshot["checks"]
