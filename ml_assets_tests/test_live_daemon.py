"""The closed loop on the live daemon: `dagster dev` (webserver + daemon) on a temporary
DAGSTER_HOME and workspace, a `files` pipeline reading a landing folder, a model in production;
then new files arrive. Stable days: the new-data sensor ingests them and nothing retrains.
Shifted days (copies, never edits in place): the drift check fails at ERROR, the retrain sensor
launches one run tagged `ml_assets/trigger=drift`, the challenger is promoted or rejected with an
audit entry, and the alerts reach a local webhook receiver. Bounded in time; everything it starts
is stopped."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets_tests.conftest import WebhookReceiver
from ml_assets_tests.helpers import REPO, rentals_dict, rentals_frame, write_config, write_rentals
from ml_assets_tests.pipeline.test_automation import shifted

pytestmark = pytest.mark.slow

# the whole test: about 120 s alone, 300-320 s beside three busy test workers on two cores
DEADLINE_S = 600
TRIGGER = "ml_assets/trigger"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}


class Loop:
    def __init__(self, tmp: Path, log: Path):
        self.tmp, self.log = tmp, log
        self.start = time.monotonic()

    def wait_for(self, what: str, predicate, timeout: float):
        end = min(time.monotonic() + timeout, self.start + DEADLINE_S)
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(2)
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        pytest.fail(f"timed out waiting for {what}\n--- dagster dev log (tail) ---\n{tail}")


def _runs(instance, **tags):
    return instance.get_runs(filters=dg.RunsFilter(tags=tags))


def _evaluation(instance, run_id: str, check: str):
    """A check's result as recorded by one run."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.asset_check_evaluation
        if evaluation is not None and evaluation.check_name == check:
            return {k: v.value for k, v in evaluation.metadata.items()}
    raise AssertionError(f"run {run_id} recorded no {check} result")


def _describe(instance) -> str:
    return "\n".join(f"{r.run_id[:8]} {r.job_name} {r.status} {r.tags.get(TRIGGER)} "
                     f"{r.tags.get('dagster/asset_partition_range_start')}.."
                     f"{r.tags.get('dagster/asset_partition_range_end')}"
                     for r in instance.get_runs())


def _finished(runs):
    """The runs, once there are some and all have finished; else None."""
    return runs if runs and all(r.is_finished for r in runs) else None


def test_drift_retrains_by_itself_under_the_daemon(tmp_path, monkeypatch):
    landing, incoming = tmp_path / "landing", tmp_path / "incoming"
    write_rentals(landing, dt.date(2024, 3, 1), days=10, rows=600)
    incoming.mkdir()
    for i, day in enumerate((11, 12)):  # stable days, then shifted copies
        rentals_frame(dt.date(2024, 3, day), 600, seed=100 + i).to_csv(
            incoming / f"2024-03-{day}.csv", index=False)
    for day in (13, 14):
        shifted(dt.date(2024, 3, day), 600, seed=day).to_csv(incoming / f"2024-03-{day}.csv", index=False)
    before = _digest(incoming)

    config = write_config(tmp_path / "rentals.yaml", rentals_dict(
        str(landing / "{date}.csv"), start="2024-03-01", end="2024-04-01",
        automation={"sensor_interval_seconds": 5, "cooldown_seconds": 0, "daily_cron": None,
                    "retrain_cron": None}))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: ml_assets.definitions\n"
                         "      location_name: ml_assets\n")
    receiver = WebhookReceiver()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ML_ASSETS_CONFIG": str(config),
           "DATA_PATH": str(tmp_path / "tables"), "MODEL_PATH": str(tmp_path / "models"),
           "ML_ASSETS_PII_KEY": "k", "ALERT_WEBHOOK_URL": receiver.url, "ENV": "development"}
    env.pop("S3_BUCKET", None)
    for key, value in env.items():
        if key in ("DAGSTER_HOME", "ML_ASSETS_CONFIG", "DATA_PATH", "MODEL_PATH"):
            monkeypatch.setenv(key, value)
    bin_dir = Path(sys.executable).parent

    # a model in production before the daemon starts
    proc = subprocess.run([str(bin_dir / "ml-assets"), "run", "--start", "2024-03-01",
                           "--end", "2024-03-11", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    log = tmp_path / "dagster_dev.log"
    loop = Loop(tmp_path, log)
    with open(log, "w") as out:
        dev = subprocess.Popen(
            [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1",
             "-p", str(_free_port())],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with dg.DagsterInstance.get() as instance:
            # 1. stable days arrive: ingested by the new-data sensor; no retrain
            for name in ("2024-03-11.csv", "2024-03-12.csv"):
                shutil.copy(incoming / name, landing / name)
            stable = loop.wait_for("the new-data run for the stable days", lambda: _finished(
                _runs(instance, **{TRIGGER: "new_data", "ml_assets/partition": "2024-03-12"})), 240)
            assert all(r.is_success for r in stable), _describe(instance)
            for check in ("feature_drift", "prediction_drift", "model_performance"):
                meta = _evaluation(instance, stable[0].run_id, check)
                assert meta["level"] != "ERROR", (check, meta)
            assert _runs(instance, **{TRIGGER: "drift"}) == [], _describe(instance)
            assert _runs(instance, **{TRIGGER: "performance"}) == [], _describe(instance)
            # no waiting here: by the end the retrain sensor has looked at these results for
            # minutes, and no retrain may name a stable day (checked below)

            # 2. shifted days arrive
            for name in ("2024-03-13.csv", "2024-03-14.csv"):
                shutil.copy(incoming / name, landing / name)
            [arrived] = loop.wait_for("the new-data run for the shifted days", lambda: _finished(
                _runs(instance, **{TRIGGER: "new_data", "ml_assets/partition": "2024-03-14"})), 240)
            assert arrived.is_success, _describe(instance)
            meta = _evaluation(instance, arrived.run_id, "feature_drift")
            assert meta["level"] == "ERROR", meta
            assert meta["error_days"] == "2024-03-13, 2024-03-14"

            # 3. the retrain sensor launched one run tagged as drift, and it decided
            retrains = loop.wait_for("a finished retrain run with ml_assets/trigger=drift",
                                     lambda: _finished(_runs(instance, **{TRIGGER: "drift"})), 240)
            assert len(retrains) == 1, _describe(instance)
            stable_retrains = [r for trigger in ("drift", "performance")
                               for r in _runs(instance, **{TRIGGER: trigger})
                               if r.tags.get("ml_assets/partition") in ("2024-03-11", "2024-03-12")]
            assert stable_retrains == [], _describe(instance)
            run = retrains[0]
            assert run.tags["ml_assets/pipeline"] == "rentals"
            assert run.tags["ml_assets/partition"] == "2024-03-14"
            assert float(run.tags["ml_assets/drift_share"]) >= 0.5
            assert run.tags.get("dagster/sensor_name") == "rentals_drift_retrain_sensor"

        from ml_assets.core.registry import ModelStore
        from ml_assets.core.storage import LocalStore

        audit = ModelStore(LocalStore(str(tmp_path / "models"))).audit("rentals")
        decision = [e for e in audit if e["run_id"] == run.run_id and e["action"] in ("promote", "reject")]
        assert decision, audit
        assert decision[-1]["actor"] == "sensor:rentals_drift_retrain_sensor"
        assert decision[-1]["details"]["trigger"] == "drift"
        events = loop.wait_for("the alerts at the receiver", lambda: (
            {"drift", decision[-1]["action"]} <= set(receiver.events()) and receiver.events()), 30)
        assert "drift" in events
        assert _digest(incoming) == before  # the source copies were never edited
    finally:
        # SIGTERM to dagster dev alone, not its process group: it stops the webserver and the
        # daemon through their shutdown pipes and then its code server. A code server signalled
        # directly exits first, dagster dev restarts it while shutting down, and the restarted
        # one outlives dagster dev until its heartbeat times out (45 s).
        os.kill(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=150)  # dagster dev gives the webserver and the daemon 60 s each
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
        receiver.stop()
    # nothing it started is left running (dagster dev's children take a moment to stop)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        leftover = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(dev.pid)],
                                  capture_output=True, text=True).stdout.strip()
        if not leftover:
            break
        time.sleep(1)
    for line in leftover.splitlines():  # a failed test leaves nothing behind either
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    assert leftover == "", leftover
