"""Serving fixtures: two real flights models trained once per package (v1.0.0 in production,
v1.1.0 a candidate), each test getting its own copy of the model store; and a real uvicorn
server on loopback."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config import PipelineConfig
from ml_assets.core.registry import ModelVersion
from ml_assets.defs.resources import StorageResource
from ml_assets.environment import ServingEnv
from ml_assets_tests.helpers import (
    flights_config,
    local_storage,
    materializations,
    materialize,
    step_errors,
)

TABLES = ["raw", "processed", "quarantine", "features"]
SERVED_DAYS = ["2013-01-13", "2013-01-14"]


@dataclass
class Trained:
    cfg: PipelineConfig
    root: Path
    v1: ModelVersion
    v2: ModelVersion
    #: day -> (feature rows, the predictions asset's table for them, scored by v1)
    days: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    #: the instance that recorded the features (open for the whole package)
    instance: dg.DagsterInstance


@pytest.fixture(scope="package")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    storage = local_storage(root)
    cfg = flights_config()
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        tables = materialize(cfg, storage, instance, "2013-01-01", "2013-01-14", layers=TABLES)
        assert tables.success, step_errors(tables)
        first = materialize(cfg, storage, instance, SERVED_DAYS[0], SERVED_DAYS[-1],
                            as_of="2013-01-10", layers=["model", "production_model", "predictions"])
        assert first.success, step_errors(first)
        second = materialize(flights_config(training={"params": {"num_boost_round": 20}}),
                             storage, instance, "2013-01-12", as_of="2013-01-12", layers=["model"])
        assert second.success, step_errors(second)
        features = materializations(tables, "features")
        predictions = materializations(first, "predictions")
        days = {day: (pd.read_parquet(features[day].metadata["dagster/uri"].value),
                      pd.read_parquet(predictions[day].metadata["dagster/uri"].value))
                for day in SERVED_DAYS}
        v1, v2 = storage.models().versions("flights")
        assert (v1.version, v2.version) == ("v1.0.0", "v1.1.0") and v2.gate_passed
        yield Trained(cfg, root, v1, v2, days, instance)


@pytest.fixture
def serving_storage(trained, tmp_path) -> StorageResource:
    """A private copy of the trained model store (aliases move in tests) and an empty tables
    store for the served-predictions chunks."""
    shutil.copytree(trained.root / "models", tmp_path / "models")
    return StorageResource(tables_root=str(tmp_path / "tables"),
                           models_root=str(tmp_path / "models"))


def records(frame: pd.DataFrame) -> list[dict]:
    """Feature rows as JSON-ready records (what a client sends): NaN -> null, label dropped."""
    rows = frame.drop(columns=["_label"]).astype(object)
    rows = rows.where(rows.notna(), None)
    return rows.to_dict(orient="records")


class LiveServer:
    """uvicorn serving `app` on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.server.started, 60), "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live_server():
    servers: list[LiveServer] = []

    def start(app) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def env(**over) -> ServingEnv:
    return ServingEnv(**{"pipeline": None, "admin_token": None, "poll_seconds": None, **over})
