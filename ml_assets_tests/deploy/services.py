"""Real services for the deployment tests: PostgreSQL, RabbitMQ, Chromium, and the processes the
tests start. A missing service skips its tests with the reason, except under CI=true, where
`.ci/run` has started it and its absence fails the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/google-chrome")


def env_with_bin(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: os.environ) with the venv's bin first on PATH, as in the image, where
    tools that start other tools (dagster-celery starts `celery`) find them."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip with `reason` when a service is missing; under CI=true, fail instead."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    return next((p for p in CHROMIUM_CANDIDATES if Path(p).exists()), None)


# ---------------------------------------------------------------- PostgreSQL
def _pg_connect(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                            connect_timeout=3)
    conn.autocommit = True
    return conn


def postgres_reason() -> str | None:
    """None when PostgreSQL answers on 127.0.0.1:5432 as user postgres, else why not."""
    try:
        _pg_connect().close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT} as {PG_USER} ({str(exc).strip()[:200]})"


@contextlib.contextmanager
def fresh_database() -> Iterator[dict[str, str]]:
    """A new, empty database for one test; dropped afterwards. Yields the DAGSTER_PG_* env."""
    name = f"ml_assets_test_{uuid.uuid4().hex[:12]}"
    conn = _pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield {"DAGSTER_PG_HOST": PG_HOST, "DAGSTER_PG_PORT": str(PG_PORT),
               "DAGSTER_PG_USER": PG_USER, "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": name}
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


# ---------------------------------------------------------------- RabbitMQ
def rabbitmq_reason() -> str | None:
    if not port_open(RABBIT_HOST, RABBIT_PORT):
        return f"RabbitMQ not reachable on {RABBIT_HOST}:{RABBIT_PORT}"
    if not shutil.which("rabbitmqctl"):
        return "rabbitmqctl not found (needed to create a vhost per test run)"
    return None


@contextlib.contextmanager
def fresh_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of our own (guest may use it); deleted afterwards. Yields its name."""
    name = f"ml_assets_test_{uuid.uuid4().hex[:12]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True,
                   timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*",
                        ".*"], check=True, capture_output=True, timeout=60)
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True,
                       timeout=60)


# ---------------------------------------------------------------- processes
class Processes:
    """Processes started in their own process groups; `stop_all` ends every group (children
    included), politely first, then with SIGKILL."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], log_dir: Path, **kw) -> subprocess.Popen:
        log = log_dir / f"{name}.log"
        handle = log.open("w")
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
        handle.close()
        self.procs.append((name, proc, log))
        return proc

    def log(self, name: str) -> str:
        for n, _, path in self.procs:
            if n == name:
                return path.read_text(errors="replace")
        return ""

    def check_alive(self, name: str) -> None:
        for n, proc, path in self.procs:
            if n == name and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     + path.read_text(errors="replace")[-4000:])

    def stop_all(self) -> None:
        for _, proc, _ in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc, _ in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    group = Processes()
    try:
        yield group
    finally:
        group.stop_all()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5, check=None):
    """Poll `predicate` until it returns a truthy value; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last_exc})" if last_exc else ""))
