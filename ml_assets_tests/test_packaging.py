"""What the build files promise: one Dagster release train, a lock that matches, a Dockerfile
built as the seed describes, secrets kept out of git."""

from __future__ import annotations

import re
import tomllib

from ml_assets_tests.helpers import REPO

TRAIN = {"dagster": "1.13.27", "dagster-webserver": "1.13.27", "dagster-aws": "0.29.27",
         "dagster-postgres": "0.29.27", "dagster-celery": "0.29.27", "dagster-k8s": "0.29.27"}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower()] = m.group(2)
    return pins


def test_dagster_family_is_one_pinned_train_in_pyproject_and_lock():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = _lock()
    for name, version in TRAIN.items():
        assert f"{name}=={version}" in deps
        assert lock[name] == version
    assert lock["evidently"] == "0.7.23"
    assert lock["pandas"].startswith("3.0.")
    assert lock["lightgbm"].startswith("4.7.")
    # every direct dependency is pinned in the lock
    for dep in deps:
        name = re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower()
        assert name in lock, f"{name} is not in requirements.lock"


def test_dockerfile_follows_the_seed():
    """The seed's promises, kept by the multi-stage image (details in deploy/test_compose...)."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.12-slim")
    assert "libgomp1" in text
    lock_copy = next(i for i, ln in enumerate(lines) if ln.startswith("COPY requirements.lock"))
    lock_install = next(i for i, ln in enumerate(lines) if "-r /tmp/requirements.lock" in ln)
    code_copy = next(i for i, ln in enumerate(lines) if ln.startswith("COPY ml_assets/"))
    assert lock_copy < lock_install < code_copy  # dependencies cached in their own layer
    user = next(ln for ln in lines if ln.startswith("USER "))
    assert not user.split()[1].startswith(("root", "0"))
    assert "dagster-webserver" in lines[-1] and "workspace.yaml" in lines[-1]


def test_env_example_documents_the_seed_variables_and_env_is_ignored():
    example = (REPO / ".env.example").read_text()
    for var in ("ENV=", "DATA_PATH=", "MODEL_PATH=", "S3_BUCKET=", "DAGSTER_PG_HOST=",
                "DAGSTER_PG_PORT=", "DAGSTER_PG_USER=", "DAGSTER_PG_PASSWORD=", "DAGSTER_PG_DB=",
                "ML_ASSETS_EXECUTOR="):
        assert re.search(rf"^{var}", example, re.M), var
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
