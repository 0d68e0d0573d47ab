from __future__ import annotations

import shutil
import urllib.request

import boto3
import dagster as dg
import pytest

from ml_assets_tests.helpers import REPO, local_storage

#: Markers of tests that take many seconds: whole pipeline runs, services, processes.
SLOW_MARKERS = ("slow", "postgres", "celery", "browser", "processes")


def pytest_collection_modifyitems(config, items):
    """The slow tests first, otherwise in collection order. Under pytest-xdist (`make test`) the
    workers take tests in this order, so they share the long ones early and both finish on quick
    ones, instead of one worker starting a minute-long test when the other has nothing left."""
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in SLOW_MARKERS))


@pytest.fixture
def instance(tmp_path):
    """A real Dagster instance (SQLite) in a temporary DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def storage(tmp_path):
    return local_storage(tmp_path)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """The environment `ml-assets` commands read, in this process (and for subprocesses started
    with os.environ): a DAGSTER_HOME seeded with the repo's dagster.yaml, local DATA_PATH and
    MODEL_PATH under tmp_path, no S3 bucket, no ENV. Returns tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "models"))
    monkeypatch.delenv("S3_BUCKET", raising=False)
    monkeypatch.delenv("ENV", raising=False)
    return tmp_path


BUCKET = "ml-assets-test"


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A real S3 HTTP endpoint on loopback (moto's ThreadedMotoServer) with bucket BUCKET."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    endpoint = f"http://{host}:{port}"
    # moto keeps one in-memory backend per process: start every test from an empty one
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


class WebhookReceiver:
    """A local HTTP server that records the JSON bodies POSTed to it (an alert receiver)."""

    def __init__(self, status: int = 200):
        import http.server
        import json
        import threading

        received = self.received = []
        answer = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(answer)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [r["ml_assets"]["event"] for r in self.received]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()
