"""`ml-assets models`: list, show, promote, rollback, audit, through the real CLI on a real
instance and model store."""

from __future__ import annotations

import json

import pytest

from ml_assets import cli
from ml_assets_tests.helpers import flights_dict, write_config
from ml_assets_tests.test_cli import env  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def _json(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def two_models(env, capsys):  # noqa: F811
    """v1.0.0 in production, then v1.1.0 promoted over it (a lenient tolerance)."""
    config = write_config(env / "flights.yaml", flights_dict(promotion={"tolerance": 0.2}))
    assert cli.main(["run", "--config", str(config), "--start", "2013-01-01", "--end", "2013-01-15",
                     "--as-of", "2013-01-12"]) == 0
    assert cli.main(["run", "--config", str(config), "--start", "2013-01-13", "--end", "2013-01-16",
                     "--as-of", "2013-01-15"]) == 0
    capsys.readouterr()
    return config


def test_list_show_rollback_promote_audit(two_models, capsys):
    # one fixture (two CLI runs, about a minute) for the three parts
    _cli_runs_are_tagged_and_audited_as_the_user(two_models, capsys)
    _list_show_rollback_promote_audit(two_models, capsys)
    _a_model_that_failed_its_gates_is_refused_before_any_run(two_models, capsys)


def _list_show_rollback_promote_audit(two_models, capsys):
    config = str(two_models)
    listed = _json(capsys, ["models", "list", "--config", config, "--json"])
    assert [v["version"] for v in listed["versions"]] == ["v1.0.0", "v1.1.0"]
    first, second = listed["versions"]
    assert second["aliases"] == ["production", "candidate"] and first["aliases"] == ["previous"]
    assert set(first) >= {"version", "model_id", "created_at", "metrics", "gate_passed", "aliases"}
    assert first["gate_passed"] is True and "roc_auc" in first["metrics"]

    shown = _json(capsys, ["models", "show", "production", "--config", config, "--json"])
    assert shown["version"] == "v1.1.0" and shown["manifest"]["config_sha256"]

    back = _json(capsys, ["models", "rollback", "--config", config, "--json",
                          "--reason", "bad canary"])
    assert back["success"] and back["action"] == "rollback" and back["model_version"] == "v1.0.0"
    # a canary of v1.1.0, then v1.1.0 promoted: the canary alias ends with the promotion, so a
    # later rollback does not send the rolled-back model canary traffic again
    _json(capsys, ["models", "canary", "v1.1.0", "--share", "0.3", "--config", config, "--json"])
    forward = _json(capsys, ["models", "promote", "v1.1.0", "--config", config, "--json"])
    assert forward["action"] == "promote" and forward["model_version"] == "v1.1.0"
    status = _json(capsys, ["models", "canary", "--config", config, "--json"])
    assert status["canary"] is None and not status["canary_in_effect"]

    audit = _json(capsys, ["models", "audit", "--config", config, "--json"])["entries"]
    assert [e["action"] for e in audit][-4:] == ["rollback", "canary_start", "canary_stop", "promote"]
    assert audit[-4]["reason"] == "bad canary" and audit[-4]["actor"].startswith("user:")
    assert "became production" in audit[-2]["reason"] and audit[-2]["from_version"] == "v1.1.0"
    again = _json(capsys, ["models", "rollback", "--config", config, "--json"])
    assert again["model_version"] == "v1.0.0"
    assert _json(capsys, ["models", "canary", "--config", config, "--json"])["canary"] is None
    assert _json(capsys, ["models", "promote", "v1.1.0", "--config", config,
                          "--json"])["model_version"] == "v1.1.0"
    assert cli.main(["models", "audit", "--config", config, "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert len(text.strip().splitlines()) == 1 and "promote" in text and "v1.0.0 -> v1.1.0" in text
    assert cli.main(["models", "list", "--config", config]) == 0
    assert "production,candidate" in capsys.readouterr().out


def _cli_runs_are_tagged_and_audited_as_the_user(two_models, capsys):
    import dagster as dg

    audit = _json(capsys, ["models", "audit", "--config", str(two_models), "--json"])["entries"]
    assert [e["action"] for e in audit] == ["register", "promote", "register", "promote"]
    assert all(e["actor"].startswith("user:") for e in audit), audit
    assert {e["details"]["trigger"] for e in audit} == {"manual"}
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"ml_assets/pipeline": "flights"}))
    assert len(runs) == 2
    assert {r.tags["ml_assets/trigger"] for r in runs} == {"manual"}
    assert sorted(r.tags["ml_assets/partition"] for r in runs) == ["2013-01-12", "2013-01-15"]


def _a_model_that_failed_its_gates_is_refused_before_any_run(two_models, capsys):
    """v1.0.0 (previous) marked as failed its gates: rollback and promote refuse it before
    any run starts, exit 2 naming --force; --force does it, audited as forced."""
    import dagster as dg

    config = str(two_models)
    first = _json(capsys, ["models", "show", "v1.0.0", "--config", config, "--json"])
    sidecar = two_models.parent / "models" / "flights" / first["model_id"] / "model.json"
    record = json.loads(sidecar.read_text())
    record["gate_passed"] = False
    sidecar.write_text(json.dumps(record))
    with dg.DagsterInstance.get() as instance:
        runs_before = len(instance.get_runs())
    for argv in (["rollback"], ["promote", "v1.0.0"]):
        assert cli.main(["models", *argv, "--config", config]) == 2
        err = capsys.readouterr().err
        assert "v1.0.0" in err and "failed its gates" in err and "--force" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs_before  # nothing was launched
    assert _json(capsys, ["models", "show", "production", "--config", config,
                          "--json"])["version"] == "v1.1.0"
    forced = _json(capsys, ["models", "rollback", "--force", "--config", config, "--json"])
    assert forced["action"] == "rollback" and forced["model_version"] == "v1.0.0"
    audit = _json(capsys, ["models", "audit", "--config", config, "--json"])["entries"]
    assert audit[-1]["action"] == "rollback" and audit[-1]["details"]["forced"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["models", "show", "v7.0.0"], "has no model 'v7.0.0'"),
    (["models", "promote", "nonsense"], "has no model 'nonsense'"),
    (["models", "rollback"], "alias 'previous' is not set"),
    (["models", "audit", "--limit", "0"], "expected a positive integer"),
    (["models", "list", "--pipeline", "nope"], "--pipeline 'nope': no such pipeline"),
    (["models", "dance"], "invalid choice: 'dance'"),
])
def test_bad_models_arguments_exit_2(env, capsys, argv, message):  # noqa: F811
    config = write_config(env / "flights.yaml", flights_dict())
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main([*argv, "--config", str(config)]))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_store_lists_nothing(env, capsys):  # noqa: F811
    config = write_config(env / "flights.yaml", flights_dict())
    assert _json(capsys, ["models", "list", "--config", str(config), "--json"])["versions"] == []
    assert cli.main(["models", "audit", "--config", str(config)]) == 0
    assert "audit log is empty" in capsys.readouterr().out


def test_instance_subcommand_is_wired(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert cli.main(["instance", "render", "sqlite"]) == 0
    assert "QueuedRunCoordinator" in capsys.readouterr().out
    assert cli.main(["instance", "init", "--home", str(tmp_path)]) == 0
    assert (tmp_path / "dagster.yaml").exists()
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main(["instance", "render", "nope"]))
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
