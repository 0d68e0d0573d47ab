"""Steps on Celery workers, for real: two `dagster-celery worker` processes on the RabbitMQ broker
this machine runs (a vhost of our own per test run), a PostgreSQL instance shared by the run and
the workers, and `dagster job execute` with ML_ASSETS_EXECUTOR=celery. The run's events name the
worker that ran each step, and every partition's content hash (and the model id) equals an
in-process run's. Skipped without PostgreSQL or RabbitMQ; required under CI=true."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
from collections import Counter

import dagster as dg
import pytest
import yaml

from ml_assets.runner import run_pipeline
from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import REPO, flights_config, flights_dict, local_storage, write_config

pytestmark = [pytest.mark.postgres, pytest.mark.celery]

START, END, AS_OF = "2013-01-01", "2013-01-08", "2013-01-07"
TABLES = ("raw", "processed", "quarantine", "features", "predictions")


@pytest.fixture
def broker():
    reason = services.rabbitmq_reason()
    services.require(reason is None, reason or "")
    with services.fresh_vhost() as vhost:
        yield f"pyamqp://guest:guest@{services.RABBIT_HOST}:{services.RABBIT_PORT}/{vhost}"


def _hashes(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[str, str], str]:
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.dagster_event.materialization
        layer = mat.asset_key.path[-1]
        if layer in TABLES:
            out[(layer, mat.partition)] = mat.metadata["content_hash"].value
        elif layer == "model":
            out[("model", "-")] = mat.metadata["model_id"].value
    return out


def _workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data
        worker = data.metadata.get("Celery worker") if data and data.metadata else None
        if worker is not None:
            out[entry.step_key] = worker.value
    return out


def test_backfill_steps_run_on_two_celery_workers_with_in_process_results(
        pg_home, broker, tmp_path):
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    worker_yaml = tmp_path / "celery.yaml"
    worker_yaml.write_text(yaml.safe_dump({"execution": {"config": {"broker": broker}}}))
    run_config = tmp_path / "run.yaml"
    run_config.write_text(yaml.safe_dump(
        {"ops": {"flights__model": {"config": {"as_of": AS_OF}}}}))
    env = {**services.env_with_bin(), "ML_ASSETS_CONFIG": str(config), "ML_ASSETS_EXECUTOR": "celery",
           "ML_ASSETS_CELERY_BROKER": broker, "DATA_PATH": str(tmp_path / "celery_tables"),
           "MODEL_PATH": str(tmp_path / "celery_models")}
    host = socket.gethostname()
    names = [f"ml_assets_w1_{os.getpid()}", f"ml_assets_w2_{os.getpid()}"]
    with services.processes() as procs:
        for name in names:
            procs.start(name, [str(services.BIN / "dagster-celery"), "worker", "start",
                               "-A", "dagster_celery.app", "-y", str(worker_yaml), "-n", name,
                               "-l", "INFO", "--", "--pool", "solo"],
                        tmp_path, cwd=REPO, env=env)
        for name in names:
            services.wait_for(lambda n=name: "ready." in procs.log(n), 90,
                              f"celery worker {name} to be ready",
                              check=lambda n=name: procs.check_alive(n))
        tags = {"dagster/asset_partition_range_start": START,
                "dagster/asset_partition_range_end": "2013-01-07"}
        result = subprocess.run(
            [str(services.BIN / "dagster"), "job", "execute", "-m", "ml_assets.definitions",
             "-j", "flights_pipeline", "-c", str(run_config), "--tags", json.dumps(tags)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
        worker_logs = {n: procs.log(n) for n in names}
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        celery_run = runs[0].run_id
        workers = _workers_by_step(instance, celery_run)
        print("step -> celery worker:", json.dumps(workers, indent=1, sort_keys=True))
        expected = {f"{n}@{host}" for n in names}
        steps = {e.step_key for e in instance.all_logs(
            celery_run, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert {"flights__raw", "flights__processed", "flights__features", "flights__model",
                "flights__predictions"} <= steps
        assert set(workers) == steps, "every step ran in a celery worker"
        assert set(workers.values()) == expected, Counter(workers.values())
        for name in names:  # and the workers say so themselves
            assert "execute_plan" in worker_logs[name] and "succeeded" in worker_logs[name]

        cfg = flights_config()
        summary = run_pipeline(cfg, dt.date.fromisoformat(START), dt.date.fromisoformat(END),
                               dt.date.fromisoformat(AS_OF), instance=instance,
                               storage=local_storage(tmp_path / "in_process"),
                               log_level="ERROR")
        assert summary["success"]
        celery_hashes = _hashes(instance, celery_run)
        in_process = _hashes(instance, summary["run_id"])
        assert len(celery_hashes) == 5 * 7 + 1
        assert celery_hashes == in_process
