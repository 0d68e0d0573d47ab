"""Hot swap and canary under load, through real HTTP (uvicorn on loopback): clients keep
sending one-record and 800-record requests while production moves and a canary starts and
stops; no request fails, every response names the version that answered, the service follows
the aliases without a restart, and a request key always meets the same version."""

from __future__ import annotations

import collections
import threading
import time
from typing import NamedTuple

import httpx
import pytest

from ml_assets.commands.models import cmd_canary
from ml_assets.core.lifecycle import set_alias_change
from ml_assets.serving import create_app
from ml_assets_tests.serving.conftest import SERVED_DAYS, env, records, wait_for

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once


class Outcome(NamedTuple):
    key: str
    status: int
    version: str | None
    role: str | None
    start: float
    end: float


class Load:
    """Client threads posting until stopped; every outcome recorded."""

    def __init__(self, url: str, body: list[dict], threads: int = 6):
        self.url = url
        self.body = body
        self.outcomes: list[Outcome] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def run(self, i: int) -> None:
        batch = i == 0  # one client sends whole-day batches (long requests in flight)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                key = f"customer-{i}-{n % 7}"
                start = time.monotonic()
                try:
                    r = client.post("/predict", json=self.body if batch else self.body[n % 50],
                                    headers={"X-Request-Key": key})
                    version = r.headers.get("x-model-version")
                    if r.status_code == 200:
                        versions = {p["model_version"] for p in r.json()["predictions"]}
                        assert versions == {version}, (versions, version)
                    with self.lock:
                        self.outcomes.append(Outcome(key, r.status_code, version,
                                                     r.headers.get("x-model-role"), start,
                                                     time.monotonic()))
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                n += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def mark(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def since(self, start: int) -> list[Outcome]:
        with self.lock:
            return self.outcomes[start:]

    def started_after(self, moment: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.start > moment]

    def first(self, start: int, predicate) -> Outcome | None:
        return next((o for o in self.since(start) if predicate(o)), None)


def test_hot_swap_and_canary_under_load_fail_no_request(trained, serving_storage, live_server):
    models = serving_storage.models()
    app = create_app(trained.cfg, serving_storage, env(poll_seconds=0.05))
    server = live_server(app)
    body = records(trained.days[SERVED_DAYS[0]][0])
    with Load(server.url, body) as load:
        assert wait_for(lambda: load.mark() > 50, 60)
        assert {o.version for o in load.since(0)} == {"v1.0.0"}

        # 1. production moves: picked up without a restart; requests already in flight finish
        #    on the model they started with, every request started after the swap gets the new
        models.move_aliases("flights", set_alias_change("production", trained.v2, {}))
        mark = load.mark()
        assert wait_for(lambda: load.first(mark, lambda o: o.version == "v1.1.0"), 30)
        swapped = load.first(mark, lambda o: o.version == "v1.1.0").end
        assert wait_for(lambda: len(load.started_after(swapped)) > 50, 60)
        assert {o.version for o in load.started_after(swapped)} == {"v1.1.0"}

        # 2. a canary on half the traffic, started with the CLI's command (audited)
        code, _ = cmd_canary(trained.cfg, models, "v1.0.0", 0.5, False, False, None,
                             "user:test", False)
        assert code == 0
        mark = load.mark()
        assert wait_for(lambda: load.first(mark, lambda o: o.role == "canary"), 30)
        started = load.first(mark, lambda o: o.role == "canary").end
        assert wait_for(lambda: sum(o.role == "canary" for o in load.started_after(started)) > 100, 60)
        by_key = collections.defaultdict(set)
        for o in load.started_after(started):
            by_key[o.key].add((o.version, o.role))
        assert all(len(seen) == 1 for seen in by_key.values()), by_key  # sticky per key
        assert {next(iter(seen)) for seen in by_key.values()} == {("v1.0.0", "canary"),
                                                          ("v1.1.0", "production")}

        # 3. the canary stops: everything started afterwards is on production
        cmd_canary(trained.cfg, models, None, None, True, False, None, "user:test", False)
        mark = load.mark()
        assert wait_for(lambda: load.first(mark, lambda o: o.role == "production"
                                           and o.key in canary_keys(by_key)), 30)
        stopped = load.first(mark, lambda o: o.role == "production"
                             and o.key in canary_keys(by_key)).end
        assert wait_for(lambda: len(load.started_after(stopped)) > 50, 60)
        assert {o.role for o in load.started_after(stopped)} == {"production"}

    assert load.errors == []
    statuses = collections.Counter(o.status for o in load.outcomes)
    assert set(statuses) == {200}, statuses
    assert [e["action"] for e in models.audit("flights")][-2:] == ["canary_start", "canary_stop"]
    with httpx.Client(base_url=server.url) as client:
        text = client.get("/metrics").text
    assert 'prediction_requests_total{model_version="v1.0.0",role="canary"}' in text
    assert 'prediction_requests_total{model_version="v1.1.0",role="production"}' in text
    swaps = next(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith('ml_assets_serving_reloads_total{result="swapped"}'))
    assert swaps >= 4  # the first load, the production move, the canary's start and stop


def canary_keys(by_key) -> set[str]:
    return {key for key, seen in by_key.items() if ("v1.0.0", "canary") in seen}


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(trained, serving_storage,
                                                                   live_server):
    from ml_assets_tests.helpers import flights_config

    cfg = flights_config(serving={"max_body_bytes": 2048})
    server = live_server(create_app(cfg, serving_storage, env(), poll=False))

    def chunks():  # no Content-Length: the limit must hold while the body arrives
        yield b"["
        for _ in range(100):
            yield b'{"padding": "' + b"x" * 100 + b'"},'
        yield b"{}]"

    with httpx.Client(base_url=server.url) as client:
        response = client.post("/predict", content=chunks())
    assert response.status_code == 413
    assert "over the limit of 2048 bytes (serving.max_body_bytes)" in response.json()["message"]
