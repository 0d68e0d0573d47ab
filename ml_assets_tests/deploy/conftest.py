from __future__ import annotations

import dagster as dg
import pytest

from ml_assets.instance import init_instance
from ml_assets_tests.deploy import services


@pytest.fixture
def pg_env():
    """DAGSTER_PG_* for a fresh PostgreSQL database, dropped after the test."""
    reason = services.postgres_reason()
    services.require(reason is None, reason or "")
    with services.fresh_database() as env:
        yield env


@pytest.fixture
def pg_home(tmp_path, pg_env, monkeypatch):
    """DAGSTER_HOME with the production (PostgreSQL) instance config on a fresh database, plus
    local table/model folders; the environment is set for this process and its children."""
    home = tmp_path / "dagster_home"
    env = {**pg_env, "ENV": "staging", "DAGSTER_HOME": str(home),
           "DATA_PATH": str(tmp_path / "tables"), "MODEL_PATH": str(tmp_path / "models"),
           "S3_BUCKET": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_INSTANCE_CONFIG", raising=False)
    init_instance(home, force=True)
    with dg.DagsterInstance.get():  # creates the schema once, before processes race to do it
        pass
    return home
