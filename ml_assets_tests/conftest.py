from __future__ import annotations

import dagster as dg
import pytest

from ml_assets_tests.helpers import local_storage


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
