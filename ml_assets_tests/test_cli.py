"""`ml-assets run`: the whole graph through Dagster into the instance at $DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli
from ml_assets_tests.helpers import REPO, flights_dict, write_config

ARGS = ["--start", "2013-01-01", "--end", "2013-01-15", "--as-of", "2013-01-12"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "models"))
    monkeypatch.delenv("S3_BUCKET", raising=False)
    monkeypatch.delenv("ENV", raising=False)
    return tmp_path


def test_run_entry_point_json_end_to_end(env):
    config = write_config(env / "flights.yaml", flights_dict())
    exe = Path(sys.executable).parent / "ml-assets"
    assert exe.exists(), "the package must install the ml-assets console script"
    proc = subprocess.run([str(exe), "run", "--config", str(config), *ARGS, "--json"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["success"] is True
    assert summary["partitions"]["raw"] == 14 and summary["partitions"]["predictions"] == 14
    assert summary["rows"]["raw"] == summary["rows"]["processed"] + summary["quarantined_rows"]
    assert summary["predictions_written"] == summary["rows"]["features"] > 10_000
    assert summary["model"]["gate_passed"] is True
    assert 0.5 < summary["model"]["metrics"]["roc_auc"] < 1.0
    assert summary["failed_blocking_checks"] == []
    # recorded in the instance at DAGSTER_HOME, so the UI shows it
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["run_id"])
        assert run is not None and run.is_success
        assert run.tags["dagster/asset_partition_range_start"] == "2013-01-01"
        assert len(instance.get_materialized_partitions(dg.AssetKey(["flights", "predictions"]))) == 14


def test_failed_blocking_check_exits_nonzero_naming_it(env, capsys):
    config = write_config(env / "flights.yaml", flights_dict(gates={"roc_auc": {"min": 0.99}}))
    code = cli.main(["run", "--config", str(config), *ARGS])
    out, err = capsys.readouterr()
    assert code == 1
    assert "blocking check gate_roc_auc failed on flights/model partition(s) (unpartitioned)" in err
    assert "observed 0." in err and "threshold >= 0.99" in err
    assert "gate         FAILED" in out and "predictions  0 rows written" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2013-13-01"], "expected a date YYYY-MM-DD, found '2013-13-01'"),
        (["--start", "2013-01-10", "--end", "2013-01-05"], "must be after --start"),
        (["--start", "2012-12-01", "--end", "2013-01-05"], "outside pipeline 'flights'"),
        (["--start", "2013-01-01", "--end", "2013-01-05", "--as-of", "2013-01-05"],
         "--as-of (2013-01-05) must fall inside"),
        (["--pipeline", "nope"], "--pipeline 'nope': no such pipeline"),
        (["--log-level", "LOUD"], "argument --log-level: invalid choice: 'LOUD'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(env, capsys, args, message):
    config = write_config(env / "flights.yaml", flights_dict())
    with pytest.raises(SystemExit) as exc:
        code = cli.main(["run", "--config", str(config), *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_config_exits_2_naming_file_and_key(env, capsys):
    config = write_config(env / "bad.yaml", flights_dict(training={"windows_days": 3}))
    assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "training.windows_days: unknown key" in err


def test_missing_dagster_home_is_reported(env, capsys, monkeypatch):
    config = write_config(env / "flights.yaml", flights_dict())
    monkeypatch.delenv("DAGSTER_HOME")
    assert cli.main(["run", "--config", str(config), *ARGS]) == 2
    assert "DAGSTER_HOME is not set" in capsys.readouterr().err


def test_bad_environment_exits_2(env, capsys, monkeypatch):
    config = write_config(env / "flights.yaml", flights_dict())
    monkeypatch.setenv("ENV", "production")
    assert cli.main(["run", "--config", str(config), *ARGS]) == 2
    assert "ENV=production needs S3_BUCKET" in capsys.readouterr().err
