"""Starting the API: the `serving` config section, the environment variables, choosing the
pipeline, and `uvicorn ml_assets.serving:app` as a real process (what `make serve` runs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from ml_assets.config import ConfigError, load_config
from ml_assets.environment import EnvironmentError_, serving_env
from ml_assets.serving import create_app
from ml_assets.serving.api import ServingSetupError
from ml_assets_tests.helpers import flights_config, flights_dict, rentals_dict, write_config
from ml_assets_tests.serving.conftest import wait_for

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once


@pytest.mark.parametrize(("serving", "message"), [
    ({"sample_rate": 2}, "serving.sample_rate: Input should be less than or equal to 1"),
    ({"canary_share": 0}, "serving.canary_share: Input should be greater than 0"),
    ({"max_body_bytes": 10}, "serving.max_body_bytes: Input should be greater than or equal to 1024"),
    ({"max_batch_rows": 0}, "serving.max_batch_rows: Input should be greater than or equal to 1"),
    ({"poll_seconds": 0}, "serving.poll_seconds: Input should be greater than or equal to 0.1"),
    ({"flush_seconds": -1}, "serving.flush_seconds: Input should be greater than 0"),
    ({"batch_threads": -1}, "serving.batch_threads: Input should be greater than or equal to 0"),
    ({"port": 80}, "serving.port: unknown key"),
])
def test_bad_serving_config_names_the_key(tmp_path, serving, message):
    path = write_config(tmp_path / "x.yaml", flights_dict(serving=serving))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert message in str(exc.value)


def test_serving_config_defaults():
    s = flights_config().serving
    assert (s.max_body_bytes, s.max_batch_rows, s.canary_share, s.sample_rate, s.poll_seconds) == (
        4 * 1024 * 1024, 10_000, 0.1, 1.0, 2.0)


@pytest.mark.parametrize(("environ", "message"), [
    ({"ML_ASSETS_ADMIN_TOKEN": "short"}, "ML_ASSETS_ADMIN_TOKEN must be at least 16 characters"),
    ({"ML_ASSETS_ADMIN_TOKEN": " " + "x" * 20}, "without surrounding spaces"),
    ({"ML_ASSETS_SERVING_POLL_SECONDS": "soon"}, "ML_ASSETS_SERVING_POLL_SECONDS must be a number"),
    ({"ML_ASSETS_SERVING_POLL_SECONDS": "0"}, "in 0.05..3600, found '0'"),
    ({"ML_ASSETS_SERVING_POLL_SECONDS": "nan"}, "in 0.05..3600, found 'nan'"),
])
def test_bad_serving_environment_is_a_clear_error(environ, message):
    with pytest.raises(EnvironmentError_, match=message):
        serving_env(environ)


def test_serving_environment():
    assert serving_env({}) == serving_env({"ML_ASSETS_ADMIN_TOKEN": ""})
    e = serving_env({"ML_ASSETS_PIPELINE": "rentals", "ML_ASSETS_ADMIN_TOKEN": "t" * 16,
                     "ML_ASSETS_SERVING_POLL_SECONDS": "0.5"})
    assert (e.pipeline, e.admin_token, e.poll_seconds) == ("rentals", "t" * 16, 0.5)
    assert "t" * 16 not in repr(e)  # the token never shows in logs


def test_the_pipeline_comes_from_ml_assets_pipeline(tmp_path, monkeypatch, serving_storage):
    folder = tmp_path / "configs"
    folder.mkdir()
    write_config(folder / "flights.yaml", flights_dict())
    write_config(folder / "rentals.yaml", rentals_dict(str(tmp_path / "{date}.csv")))
    monkeypatch.setenv("ML_ASSETS_CONFIG", str(folder))
    monkeypatch.delenv("ML_ASSETS_PIPELINE", raising=False)
    with pytest.raises(ServingSetupError, match=r"several pipelines configured \['flights', "
                       r"'rentals'\]; set ML_ASSETS_PIPELINE"):
        create_app(storage=serving_storage)
    monkeypatch.setenv("ML_ASSETS_PIPELINE", "trains")
    with pytest.raises(ServingSetupError, match=r"ML_ASSETS_PIPELINE='trains': no such pipeline"):
        create_app(storage=serving_storage)
    monkeypatch.setenv("ML_ASSETS_PIPELINE", "rentals")
    assert create_app(storage=serving_storage).state.serving.cfg.name == "rentals"
    monkeypatch.setenv("ML_ASSETS_CONFIG", str(tmp_path / "missing"))
    with pytest.raises(ServingSetupError, match="no such config file or folder"):
        create_app(storage=serving_storage)
    monkeypatch.setenv("ML_ASSETS_CONFIG", str(folder))
    monkeypatch.setenv("ML_ASSETS_ADMIN_TOKEN", "short")
    with pytest.raises(ServingSetupError, match="at least 16 characters"):
        create_app(storage=serving_storage)


def test_importing_the_package_does_nothing():
    code = ("import sys, ml_assets.serving; "
            "print(sorted(m for m in ('fastapi', 'mlflow', 'lightgbm', 'dagster') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_uvicorn_serves_ml_assets_serving_app(trained, tmp_path):
    """The entry point `make serve` and the image run: a real uvicorn process, configured by the
    environment alone."""
    shutil.copytree(trained.root / "models", tmp_path / "models")
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    env = {**os.environ, "MODEL_PATH": str(tmp_path / "models"), "DATA_PATH": str(tmp_path / "t"),
           "ML_ASSETS_CONFIG": str(config), "ENV": "development"}
    env.pop("S3_BUCKET", None)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "ml_assets.serving:app", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        assert wait_for(ready, 90, 0.2) and proc.poll() is None, _output(proc)
        assert httpx.get(f"{url}/model").json()["production"]["version"] == "v1.0.0"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _output(proc: subprocess.Popen) -> str:
    proc.kill()
    return proc.communicate(timeout=30)[0][-3000:]
