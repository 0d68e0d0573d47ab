"""`make ui`'s webserver on the same DAGSTER_HOME shows the runs `ml-assets run` recorded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ml_assets import cli
from ml_assets_tests.helpers import REPO, flights_dict, write_config

pytestmark = pytest.mark.slow

QUERY = """
{
  runsOrError { ... on Runs { results { runId status pipelineName } } }
  assetNodes(group: {groupName: "model", repositoryName: "__repository__",
                     repositoryLocationName: "ml_assets"}) { assetKey { path } }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_HOME": str(home), "DATA_PATH": str(tmp_path / "data"),
                       "MODEL_PATH": str(tmp_path / "models")}.items():
        monkeypatch.setenv(key, value)
    return home


def test_webserver_lists_cli_runs_and_the_graph(home, tmp_path):
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    assert cli.main(["run", "--config", str(config), "--start", "2013-01-01", "--end",
                     "2013-01-08", "--as-of", "2013-01-07"]) == 0
    port = _free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO, env={**os.environ, "ML_ASSETS_CONFIG": str(config)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            try:
                data = _graphql(port, QUERY)
                if data["assetNodes"]:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail("webserver exited: " + proc.stdout.read()[-3000:])
            time.sleep(1)
        assert data is not None, "webserver did not answer within 120 s"
        runs = data["runsOrError"]["results"]
        assert [r["pipelineName"] for r in runs] == ["flights_pipeline"]
        assert sorted(n["assetKey"]["path"] for n in data["assetNodes"]) == [
            ["flights", "model"], ["flights", "production_model"]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
