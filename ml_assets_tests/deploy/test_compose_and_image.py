"""Docker Compose and the image, validated without a Docker engine: the compose file against the
Compose specification's schema, the Dockerfile with hadolint, the layout both promise, and every
command the compose file runs (with the image's entrypoint) started here for a few seconds
against the same workspace and a fresh PostgreSQL database, each passing its compose health
check."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
IMAGE_SERVICES = ("code-server", "webserver", "daemon", "celery-worker")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


# ---------------------------------------------------------------- static validation
def test_compose_file_matches_the_compose_specification(tmp_path):
    ok = _run([str(services.BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
               str(COMPOSE)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = compose()
    broken["services"]["webserver"]["comand"] = ["dagster-webserver"]  # a typo
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(broken))
    failed = _run([str(services.BIN / "check-jsonschema"), "--builtin-schema",
                   "vendor.compose-spec", str(bad)])
    assert failed.returncode != 0 and "comand" in failed.stdout + failed.stderr


def test_dockerfile_passes_hadolint(tmp_path):
    ok = _run([str(services.BIN / "hadolint"), str(DOCKERFILE)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    assert _run([str(services.BIN / "hadolint"), str(bad)]).returncode != 0


def test_compose_is_dagsters_standard_deployment():
    c = compose()
    svc = c["services"]
    assert {"postgres", "code-server", "webserver", "daemon", "minio"} <= set(svc)
    assert "healthcheck" in svc["postgres"]
    for name in ("code-server", "webserver", "daemon", "postgres", "minio"):
        assert svc[name]["restart"] == "unless-stopped", name
        assert "healthcheck" in svc[name], name
    for name in IMAGE_SERVICES:
        assert svc[name]["env_file"] == ".env", name
        assert svc[name]["environment"]["ENV"] == "staging", name
        assert svc[name]["environment"]["DAGSTER_PG_HOST"] == "postgres", name
    assert svc["code-server"]["command"][:3] == ["dagster", "code-server", "start"]
    assert svc["webserver"]["depends_on"]["code-server"]["condition"] == "service_healthy"
    assert svc["code-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for mount in (v for s in svc.values() for v in s.get("volumes", [])):
        assert mount.split(":")[0] in c["volumes"], f"{mount} is not a named volume"
    assert svc["webserver"]["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_image_is_multi_stage_non_root_and_chooses_the_instance_at_run_time():
    text = DOCKERFILE.read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.lstrip().startswith("#")]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2 and all("python:3.12-slim" in f or " AS " in f for f in froms)
    lock = next(i for i, ln in enumerate(lines) if ln.startswith("COPY requirements.lock"))
    install = next(i for i, ln in enumerate(lines) if "-r /tmp/requirements.lock" in ln)
    code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY ml_assets/"))
    assert lock < install < code
    assert "libgomp1" in text
    user = [ln for ln in lines if ln.startswith("USER ")][-1]
    assert not user.split()[1].startswith(("root", "0"))
    assert any(ln.startswith("HEALTHCHECK") for ln in lines)
    assert "dagster.yaml" not in " ".join(ln for ln in lines if ln.startswith(("COPY", "RUN")))
    assert 'ENTRYPOINT ["ml-assets-entrypoint"]' in lines
    assert "workspace.yaml /app/dagster_home/workspace.yaml" in text


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".venv", ".dagster_home", ".data", ".git"):
        assert entry in ignored


# ---------------------------------------------------------------- the commands, started here
def _local(args: list[str], home, ports: dict[str, int]) -> list[str]:
    """A compose command as it runs on this machine: paths in $DAGSTER_HOME, loopback, free
    ports (the container ports 3000/4000 become `ports`)."""
    out = []
    for a in args:
        a = a.replace("/app/dagster_home", str(home)).replace("0.0.0.0", "127.0.0.1")
        a = a.replace("$$", "$")
        for container, local in ports.items():
            a = a.replace(f":{container}/", f":{local}/")
            if a == container:
                a = str(local)
        out.append(a)
    return out


def _healthy(service: dict, home, ports, env) -> bool:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    res = subprocess.run(_local(test[1:], home, ports), env=env, capture_output=True,
                         timeout=60)
    return res.returncode == 0


@pytest.fixture
def local_compose(pg_home, tmp_path):
    """The workspace of the compose file, pointed at the loopback code server port."""
    ports = {"4000": services.free_port(), "3000": services.free_port()}
    workspace = yaml.safe_load((REPO / "deploy" / "docker" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "code-server"
    server.update(host="127.0.0.1", port=ports["4000"])
    (pg_home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    (pg_home / "dagster.yaml").unlink()  # as in a new container: the entrypoint writes it
    env = services.env_with_bin()
    env.pop("DAGSTER_INSTANCE_CONFIG", None)
    entrypoint = [str(REPO / "deploy" / "docker" / "entrypoint.sh")]
    return pg_home, ports, env, entrypoint


@pytest.mark.postgres
@pytest.mark.processes
def test_every_compose_command_exists_and_starts(local_compose, tmp_path):
    home, ports, env, entrypoint = local_compose
    svc = compose()["services"]
    for name in ("code-server", "webserver", "daemon"):
        exe = svc[name]["command"][0]
        assert (services.BIN / exe).exists(), f"{name}: {exe} is not installed by the lock file"
    with services.processes() as procs:
        procs.start("code-server", entrypoint + _local(svc["code-server"]["command"], home, ports),
                    tmp_path, env=env, cwd=tmp_path)
        services.wait_for(lambda: _healthy(svc["code-server"], home, ports, env), 120,
                          "the code server's health check", interval=1,
                          check=lambda: procs.check_alive("code-server"))
        assert "ENV=staging -> postgres" in procs.log("code-server")
        for name in ("webserver", "daemon"):
            procs.start(name, entrypoint + _local(svc[name]["command"], home, ports), tmp_path,
                        env=env, cwd=tmp_path)
        services.wait_for(lambda: _healthy(svc["webserver"], home, ports, env), 120,
                          "the webserver's health check", interval=1,
                          check=lambda: procs.check_alive("webserver"))
        query = {"query": "{ workspaceOrError { ... on Workspace { locationEntries { name "
                          "loadStatus locationOrLoadError { __typename } } } } }"}
        req = urllib.request.Request(f"http://127.0.0.1:{ports['3000']}/graphql",
                                     data=json.dumps(query).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            entries = json.loads(resp.read())["data"]["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
            ("ml_assets", "RepositoryLocation")]
        services.wait_for(lambda: _healthy(svc["daemon"], home, ports, env), 120,
                          "the daemon's liveness check", interval=2,
                          check=lambda: procs.check_alive("daemon"))
        for name in ("code-server", "webserver", "daemon"):
            procs.check_alive(name)


@pytest.mark.postgres
@pytest.mark.celery
@pytest.mark.processes
def test_compose_celery_worker_command_starts(local_compose, tmp_path):
    reason = services.rabbitmq_reason()
    services.require(reason is None, reason or "")
    home, ports, env, entrypoint = local_compose
    worker = compose()["services"]["celery-worker"]
    assert shutil.which("dagster-celery", path=str(services.BIN))
    with services.fresh_vhost() as vhost:
        env = {**env, "ML_ASSETS_EXECUTOR": "celery", "ML_ASSETS_CELERY_BROKER":
               f"pyamqp://guest:guest@{services.RABBIT_HOST}:{services.RABBIT_PORT}/{vhost}"}
        with services.processes() as procs:
            procs.start("celery-worker", entrypoint + _local(worker["command"], home, ports),
                        tmp_path, env=env, cwd=tmp_path)
            services.wait_for(lambda: "ready." in procs.log("celery-worker"), 90,
                              "the celery worker to be ready",
                              check=lambda: procs.check_alive("celery-worker"))
            assert vhost in procs.log("celery-worker")
