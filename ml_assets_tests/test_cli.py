"""`ml-assets run`: the whole graph through Dagster into the instance at $DAGSTER_HOME."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli
from ml_assets.core.days import ranges_text
from ml_assets.runner import render, step_failure
from ml_assets_tests.helpers import flights_dict, rentals_dict, write_config, write_rentals

ARGS = ["--start", "2013-01-01", "--end", "2013-01-15", "--as-of", "2013-01-12"]
QUIET = ("BetaWarning", "PreviewWarning", "SupersessionWarning", "Traceback", "Stack Trace")
EXE = Path(sys.executable).parent / "ml-assets"


@pytest.fixture
def env(cli_env):
    return cli_env


@pytest.mark.slow
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
    # a quiet console: none of Dagster's beta/preview/supersession warnings, no stack traces
    assert not [w for w in QUIET if w in proc.stderr], proc.stderr[-3000:]
    # which scored days the model was trained on (window 10 days to 01-12, 3 of them validation)
    days = summary["prediction_days"]
    assert days["training_window"] == "2013-01-03..2013-01-12"
    assert days["in_sample"] == "2013-01-03..2013-01-12" and days["in_sample_days"] == 10
    assert days["in_sample_fit"] == "2013-01-03..2013-01-09"
    assert days["in_sample_validation"] == "2013-01-10..2013-01-12"
    assert days["out_of_sample"] == "2013-01-01..2013-01-02, 2013-01-13..2013-01-14"
    assert days["out_of_sample_days"] == 4
    text = render(summary)
    assert ("in-sample 2013-01-03..2013-01-12 (10 days); out-of-sample 2013-01-01..2013-01-02, "
            "2013-01-13..2013-01-14 (4 days)") in text
    # monitoring checks name their level and the days at each level, not the whole range
    for check in summary["failed_checks"]:
        if check["asset"] in ("flights/drift", "flights/model_performance"):
            assert check["level"] in ("WARN", "ERROR")
            flagged = sorted(check["error_days"] + check["warn_days"])
            assert flagged and check["partitions"] == ranges_text(flagged)
            assert f"check {check['level']}: {check['check']} on {check['asset']}: " in text
    # the lookup tables the transforms joined, with their versions
    assert sorted(summary["lookups"]) == ["planes", "weather"]
    assert summary["lookups"]["weather"]["rows"] > 20_000
    # recorded in the instance at DAGSTER_HOME, so the UI shows it
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["run_id"])
        assert run is not None and run.is_success
        assert run.tags["dagster/asset_partition_range_start"] == "2013-01-01"
        assert len(instance.get_materialized_partitions(dg.AssetKey(["flights", "predictions"]))) == 14


@pytest.mark.slow
def test_failed_blocking_check_exits_nonzero_naming_it(env, capsys):
    config = write_config(env / "flights.yaml", flights_dict(gates={"roc_auc": {"min": 0.99}}))
    code = cli.main(["run", "--config", str(config), *ARGS])
    out, err = capsys.readouterr()
    assert code == 1
    assert "blocking check gate_roc_auc failed on flights/model partition(s) (unpartitioned)" in err
    assert "observed 0." in err and "threshold >= 0.99" in err
    assert "gate         FAILED" in out and "predictions  0 rows written" in out


def test_no_train_scores_new_days_with_production_after_a_failed_gate(env, capsys):
    lenient = write_config(env / "flights.yaml", flights_dict())
    (env / "strict").mkdir()
    strict = write_config(env / "strict" / "flights.yaml",
                          flights_dict(gates={"roc_auc": {"min": 0.99}}))
    assert cli.main(["run", "--config", str(lenient), *ARGS]) == 0  # v1.0.0 in production
    capsys.readouterr()
    days = ["--start", "2013-01-15", "--end", "2013-01-17"]
    assert cli.main(["run", "--config", str(strict), *days]) == 1  # v1.1.0 fails its gate
    out, _ = capsys.readouterr()
    assert "predictions  0 rows written" in out
    assert ("score these days with the production model as it stands: ml-assets run --start "
            "2013-01-15 --end 2013-01-17 --no-train") in out
    code = cli.main(["run", "--config", str(strict), *days, "--no-train", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["trained"] is False and summary["model"] == {} and summary["range"]["as_of"] is None
    assert summary["partitions"]["predictions"] == 2 and summary["predictions_written"] > 0
    assert summary["scored_by"] in summary["prediction_days"]["model"]
    from ml_assets.commands.models import store_for_env

    versions = store_for_env().versions("flights")
    assert [v.version for v in versions] == ["v1.0.0", "v1.1.0"]  # nothing new was trained
    assert summary["scored_by"] == versions[0].model_id
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["run_id"])
    assert run.job_name == "flights_daily" and run.tags["ml_assets/trigger"] == "manual"
    # --as-of chooses a training window: with --no-train it is a usage error
    assert cli.main(["run", "--config", str(strict), *days, "--no-train",
                     "--as-of", "2013-01-15"]) == 2
    assert "--no-train trains nothing" in capsys.readouterr().err


def test_a_training_window_with_missing_days_is_said(env, capsys):
    """Days 2013-01-03..05 are never materialized: the model trains on the other 7 of its
    10-day window, and the summary says which days it went without."""
    config = write_config(env / "flights.yaml", flights_dict(gates={"roc_auc": {"min": 0.5}}))
    assert cli.main(["run", "--config", str(config), "--start", "2013-01-01",
                     "--end", "2013-01-03", "--as-of", "2013-01-02"]) in (0, 1)
    capsys.readouterr()
    code = cli.main(["run", "--config", str(config), "--start", "2013-01-06", "--end",
                     "2013-01-11", "--json"])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["model"]["window_days_missing"] == ["2013-01-03", "2013-01-04", "2013-01-05"]
    assert summary["model"]["window_days_empty"] == []
    from ml_assets.runner import render

    assert ("window       trained anyway without 3 day(s) never materialized "
            "(2013-01-03..2013-01-05)") in render(summary), render(summary)
    assert code == 0, err
    # a window that reaches before the pipeline's first day: those days are not missing
    code = cli.main(["run", "--config", str(config), "--start", "2013-01-06", "--end",
                     "2013-01-09", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["model"]["window_days_missing"] == [
        "2013-01-03", "2013-01-04", "2013-01-05"]  # not 2012-12-30..2012-12-31


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


def test_an_instance_that_cannot_be_used_exits_2_in_one_line(env, capsys, monkeypatch):
    """A PostgreSQL dagster.yaml whose host variable is unset: one line naming it, no run."""
    from ml_assets.instance import render

    (env / "home" / "dagster.yaml").write_text(render("postgres"))
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(var, raising=False)
    config = write_config(env / "flights.yaml", flights_dict())
    assert cli.main(["run", "--config", str(config), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ml-assets: error: cannot use the Dagster instance at DAGSTER_HOME=")
    assert "DAGSTER_PG_" in err and "is not set" in err, err
    assert "Stack Trace" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (env / "data").exists()  # nothing ran


def test_a_model_store_that_cannot_be_used_exits_2_in_one_line(env, capsys, monkeypatch,
                                                               s3_endpoint):
    """`models list` against a bucket that does not exist (a real S3 endpoint on loopback)."""
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    config = write_config(env / "flights.yaml", flights_dict())
    code = cli.main(["models", "list", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ml-assets: error: cannot use the model store or the instance: ")
    assert "NoSuchBucket" in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- failures in one line
FAILING_TRANSFORM = """
import pandas as pd


def explode(frame):
    if (pd.to_datetime(frame["scheduled_departure"]).dt.day == 3).any():
        raise KeyError("no column\\n'wind_gust' here")
    return frame
"""
ONE_LINE = ("transform boom_transforms:explode failed on partition 2013-01-03: KeyError: no column "
            "'wind_gust' here")


def _failing_config(env) -> tuple[Path, dict]:
    (env / "boom_transforms.py").write_text(FAILING_TRANSFORM)
    data = flights_dict()
    data["features"]["transforms"] = [*data["features"]["transforms"], "boom_transforms:explode"]
    sub_env = os.environ.copy()
    sub_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(env), sub_env.get("PYTHONPATH")) if p)
    return write_config(env / "flights.yaml", data), sub_env


@pytest.mark.slow
def test_a_failing_transform_is_one_line_naming_transform_partition_and_exception(env):
    config, sub_env = _failing_config(env)
    proc = subprocess.run([str(EXE), "run", "--config", str(config), *ARGS, "--json"],
                          capture_output=True, text=True, env=sub_env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    [failure] = summary["step_failures"]
    assert failure["step"] == "flights__features"
    assert failure["error"] == ONE_LINE
    assert failure["line"] == f"step flights__features failed: {ONE_LINE}"
    # stderr: one line per Dagster message at the default level, and the failure named once
    assert not [w for w in QUIET if w in proc.stderr], proc.stderr[-3000:]
    assert f"ml-assets: step flights__features failed: {ONE_LINE}" in proc.stderr.splitlines()
    assert "Dependencies for step" not in proc.stderr
    # the run's failure in the instance names it too, and keeps the stack trace in its logs
    with dg.DagsterInstance.get() as instance:
        records = instance.all_logs(summary["run_id"], of_type=dg.DagsterEventType.STEP_FAILURE)
        [record] = records
        data = record.dagster_event.step_failure_data
        assert data.user_failure_data.description == ONE_LINE
        causes, err = [], data.error
        while err is not None:
            causes.append(err)
            err = err.cause
        assert any(c.cls_name == "KeyError" and c.stack for c in causes)


@pytest.mark.slow
def test_log_level_debug_shows_the_warnings_and_stack_traces(env):
    config, sub_env = _failing_config(env)
    proc = subprocess.run([str(EXE), "run", "--config", str(config), *ARGS,
                           "--log-level", "DEBUG"],
                          capture_output=True, text=True, env=sub_env, timeout=300)
    assert proc.returncode == 1
    assert "BetaWarning" in proc.stderr
    assert "Traceback" in proc.stderr or "Stack Trace" in proc.stderr
    assert f"step flights__features failed: {ONE_LINE}" in proc.stdout


def test_models_command_prints_no_dagster_warnings(env):
    config = write_config(env / "flights.yaml", flights_dict())
    proc = subprocess.run([str(EXE), "models", "list", "--config", str(config)],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [w for w in QUIET if w in proc.stderr], proc.stderr[-3000:]


def test_a_step_error_that_is_not_a_failure_is_its_class_and_message(tmp_path):
    """A real Dagster run whose asset raises: the summary line is the exception class and its
    first words, with the partition range, not Dagster's wrapper."""
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")

    @dg.asset(partitions_def=daily)
    def broken():
        raise ValueError("column 'fare' holds text:\n'abc' at row 7")

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([broken], instance=instance, partition_key="2024-01-02",
                                raise_on_error=False)
    [event] = [e for e in result.all_events if e.is_step_failure]
    day = dt.date(2024, 1, 2)
    out = step_failure(event, day, day)
    assert out["error_type"] == "ValueError"
    assert out["error"] == "ValueError: column 'fare' holds text: 'abc' at row 7"
    assert out["line"] == ("step broken failed on partitions 2024-01-02: ValueError: column "
                           "'fare' holds text: 'abc' at row 7")
    # an unpartitioned step (the model) names no partitions
    out = step_failure(event, day, day + dt.timedelta(days=3), unpartitioned={"broken"})
    assert out["partitions"] == "(unpartitioned)"
    assert out["line"] == ("step broken failed: ValueError: column 'fare' holds text: 'abc' at "
                           "row 7")


# ---------------------------------------------------------------- a missing PII key
@pytest.mark.parametrize("command", ["run", "release"])
def test_missing_pii_key_exits_2_naming_the_variable(env, capsys, monkeypatch, command):
    write_rentals(env / "landing", dt.date(2024, 3, 1), 3, rows=20)
    config = write_config(env / "rentals.yaml", rentals_dict(str(env / "landing" / "{date}.csv"),
                                                             end="2024-03-04"))
    monkeypatch.delenv("ML_ASSETS_PII_KEY", raising=False)
    assert cli.main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "ML_ASSETS_PII_KEY is not set" in err and "['rider_email']" in err
    # the variable the config names, when it names another
    config = write_config(env / "rentals2.yaml", rentals_dict(
        str(env / "landing" / "{date}.csv"), end="2024-03-04", pii_key_env="RENTALS_HMAC_KEY"))
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "not-this-one")
    monkeypatch.delenv("RENTALS_HMAC_KEY", raising=False)
    assert cli.main([command, "--config", str(config)]) == 2
    assert "RENTALS_HMAC_KEY is not set" in capsys.readouterr().err


# ---------------------------------------------------------------- a PII key other than the stored one
def _rentals_with_stored_key(env, monkeypatch, key: str):
    """A rentals config and a tables store (DATA_PATH) whose data was hashed with `key`."""
    from ml_assets.core.pii import ROTATE_ENV, remember_key
    from ml_assets.core.storage import LocalStore

    write_rentals(env / "landing", dt.date(2024, 3, 1), 3, rows=20)
    config = write_config(env / "rentals.yaml", rentals_dict(str(env / "landing" / "{date}.csv"),
                                                             end="2024-03-04"))
    remember_key(LocalStore(str(env / "data")), "rentals", key, "ML_ASSETS_PII_KEY")
    monkeypatch.delenv(ROTATE_ENV, raising=False)
    return config


@pytest.mark.parametrize("command", ["run", "release"])
def test_another_pii_key_exits_2_before_the_run(env, capsys, monkeypatch, command):
    from ml_assets.core.pii import key_fingerprint

    config = _rentals_with_stored_key(env, monkeypatch, "key-one")
    before = sorted(p.name for p in (env / "data").rglob("*"))
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-two")
    assert cli.main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    old, new = key_fingerprint("key-one"), key_fingerprint("key-two")
    assert err == (
        "ml-assets: error: pipeline 'rentals': ML_ASSETS_PII_KEY differs from the key this "
        f"pipeline's stored data was hashed with (fingerprint {old}, now {new}): hashed columns "
        f"would not join across days. To rotate the key on purpose, set "
        f"ML_ASSETS_PII_KEY_ROTATE={new} for this run, then re-materialize raw for the stored "
        "days; otherwise set ML_ASSETS_PII_KEY back to the old key\n")
    assert sorted(p.name for p in (env / "data").rglob("*")) == before  # nothing ran
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def test_the_rotation_variable_passes_the_cli_check_only_for_the_new_key(env, capsys, monkeypatch):
    from ml_assets.config import load_config
    from ml_assets.core.pii import ROTATE_ENV, key_fingerprint

    config = _rentals_with_stored_key(env, monkeypatch, "key-one")
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-two")
    monkeypatch.setenv(ROTATE_ENV, key_fingerprint("key-two"))
    cli.check_pii_keys(load_config(config))  # no error: the run may start, raw records it
    for value, says in [("1", "ML_ASSETS_PII_KEY_ROTATE must be the 12-hex-character "
                              "fingerprint of the new ML_ASSETS_PII_KEY (the refusal names it), "
                              "found '1'"),
                        (key_fingerprint("key-three"),
                         f"ML_ASSETS_PII_KEY_ROTATE={key_fingerprint('key-three')} names another "
                         "key than ML_ASSETS_PII_KEY")]:
        monkeypatch.setenv(ROTATE_ENV, value)
        assert cli.main(["run", "--config", str(config)]) == 2
        assert says in capsys.readouterr().err


def test_summary_names_extra_columns_that_ingest_records(tmp_path):
    """Columns outside the contract, as ingest records them per partition (names and counts),
    are named and counted in the summary."""
    from ml_assets.runner import summarize
    from ml_assets_tests.helpers import flights_config

    daily = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-03")
    seen = {"2013-01-01": ("contact_email", 2), "2013-01-02": ("contact_email, note", 5)}

    @dg.asset(key=["flights", "raw"], partitions_def=daily)
    def raw(context):  # (no annotation: this module has postponed annotations)
        names, count = seen[context.partition_key]
        return dg.MaterializeResult(metadata={"extra_columns": names,
                                              "extra_columns_count": count,
                                              "dagster/row_count": 10})

    start, end = dt.date(2013, 1, 1), dt.date(2013, 1, 3)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        results = [dg.materialize([raw], instance=instance, partition_key=day) for day in seen]
    summary = summarize(flights_config(), results[0], start, end, start, {})
    assert summary["extra_columns"] == {"extra_columns": ["contact_email"],
                                        "extra_columns_count": 2}
    summary = summarize(flights_config(), results[1], start, end, start, {})
    assert summary["extra_columns"]["extra_columns"] == ["contact_email", "note"]
    summary["prediction_days"] = {}
    assert "  extra columns: contact_email, note" in render(summary)


def test_a_long_failure_line_is_cut_with_a_marker_not_silently():
    from ml_assets.runner import LINE_LIMIT, one_line

    text = "partition 2024-03-14 is blocked:\n" + ", ".join(f"2024-03-{d:02d}" for d in range(1, 29)) * 8
    line = one_line(text)
    flat = " ".join(text.split())
    assert "\n" not in line and line.startswith(flat[:LINE_LIMIT])
    assert line.endswith(f" [... {len(flat) - LINE_LIMIT} more characters in the run's logs]")
    assert one_line("short\n  message") == "short message"


def test_a_run_on_another_store_than_the_last_raw_partition_warns(tmp_path):
    """A mistyped DATA_PATH would start a second store silently: the summary says so."""
    from ml_assets.defs.names import PipelineNames
    from ml_assets.runner import store_moved_from

    raw = PipelineNames("flights").raw
    with dg.DagsterInstance.ephemeral() as instance:
        assert store_moved_from(instance, raw, "/data/tables/") is None  # nothing stored yet
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=raw, partition="2013-01-01", metadata={"dagster/uri": dg.MetadataValue.path(
                "/data/tables/flights/raw/2013-01-01/abc.parquet")}))
        assert store_moved_from(instance, raw, "/data/tables/") is None
        assert store_moved_from(instance, raw, "/data/tbles/") == "/data/tables"
    summary = {"pipeline": "flights", "run_id": "r", "success": True, "store_moved_from": "/data/tables",
               "range": {"start": "2013-01-01", "end": "2013-01-02", "as_of": None}}
    line = next(ln for ln in render_partial(summary) if "warning" in ln)
    assert "written under /data/tables, not under this run's tables store" in line


def render_partial(summary):
    """render() on a summary holding only what its first lines need."""
    from ml_assets.runner import render

    base = {"rows": {}, "partitions": {}, "quarantined_rows": 0, "model": {}, "production": None,
            "gate": {"passed": None, "checks": []}, "predictions_written": 0, "failed_checks": [],
            "failed_blocking_checks": [], "step_failures": [], "lookups": {}, "extra_columns": {},
            "predicted_days": [], "scored_by": {}, "stale_runs_failed": [], "trained": False}
    try:
        return render({**base, **summary}).splitlines()
    except KeyError as exc:  # a key render needs later on: the first lines are what we check
        raise AssertionError(f"render needs {exc}") from None
