"""`ml-assets models canary | reproduce | promote --git-tag` through the real CLI, on a copy of
the trained model store."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ml_assets import cli
from ml_assets_tests.helpers import REPO, flights_dict, write_config

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once


@pytest.fixture
def cli_env(trained, tmp_path, monkeypatch):
    """DAGSTER_HOME, MODEL_PATH (a private copy of the trained store) and a config file."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    shutil.copytree(trained.root / "models", tmp_path / "models")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "models"))
    for var in ("S3_BUCKET", "ENV", "MLFLOW_TRACKING_URI", "ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    return write_config(tmp_path / "flights.yaml", flights_dict())


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sidecar_path(tmp_path: Path, model_id: str) -> Path:
    return tmp_path / "models" / "flights" / model_id / "model.json"


# ---------------------------------------------------------------- canary
def test_canary_start_status_stop_is_audited_and_leaves_production(cli_env, capsys, trained):
    config = str(cli_env)
    code, out, _ = run(capsys, "models", "canary", "v1.1.0", "--share", "0.25", "--config", config,
                       "--json", "--reason", "try the retrain on a quarter")
    assert code == 0
    started = json.loads(out)
    assert started["canary"]["model_id"] == trained.v2.model_id and started["canary"]["share"] == 0.25
    code, out, _ = run(capsys, "models", "canary", "--config", config)
    assert code == 0 and "canary v1.1.0" in out and "25.0% of requests" in out
    code, out, _ = run(capsys, "models", "list", "--config", config, "--json")
    aliases = {v["version"]: v["aliases"] for v in json.loads(out)["versions"]}
    assert aliases == {"v1.0.0": ["production"], "v1.1.0": ["candidate", "canary"]}
    code, out, _ = run(capsys, "models", "canary", "--stop", "--config", config)
    assert code == 0 and "canary v1.1.0" in out and "stopped" in out
    code, out, _ = run(capsys, "models", "canary", "--stop", "--config", config)
    assert code == 0 and "no canary was running" in out
    code, out, _ = run(capsys, "models", "audit", "--config", config, "--json")
    entries = json.loads(out)["entries"]
    start, stop = entries[-2:]
    assert (start["action"], start["to_version"], start["details"]["share"]) == (
        "canary_start", "v1.1.0", 0.25)
    assert start["reason"] == "try the retrain on a quarter" and start["actor"].startswith("user:")
    assert (stop["action"], stop["from_version"]) == ("canary_stop", "v1.1.0")
    code, out, _ = run(capsys, "models", "show", "production", "--config", config, "--json")
    assert json.loads(out)["version"] == "v1.0.0"  # production never moved


def test_a_promoted_canary_ends_and_a_leftover_alias_is_shown_as_not_in_effect(cli_env, capsys,
                                                                               trained):
    config = str(cli_env)
    assert run(capsys, "models", "canary", "v1.1.0", "--config", config)[0] == 0
    code, out, err = run(capsys, "models", "promote", "v1.1.0", "--config", config)
    assert code == 0, err
    code, out, _ = run(capsys, "models", "canary", "--config", config)
    assert code == 0 and "no canary (production v1.1.0" in out, out
    # an alias left on the production model (as before canaries ended with a promotion)
    from ml_assets.commands.models import store_for_env
    from ml_assets.core.lifecycle import set_alias_change

    store = store_for_env()
    store.move_aliases("flights", set_alias_change(
        "canary", store.resolve("flights", "v1.1.0"), {"share": 0.2}))
    code, out, _ = run(capsys, "models", "canary", "--config", config)
    assert code == 0 and "no canary in effect" in out and "production v1.1.0" in out, out
    code, out, _ = run(capsys, "models", "canary", "--config", config, "--json")
    status = json.loads(out)
    assert status["canary_in_effect"] is False and status["canary"]["version"] == "v1.1.0"


def test_canary_share_defaults_to_the_config(cli_env, capsys, tmp_path):
    config = write_config(tmp_path / "c.yaml", flights_dict(serving={"canary_share": 0.05}))
    assert run(capsys, "models", "canary", "v1.1.0", "--config", str(config))[0] == 0
    code, out, _ = run(capsys, "models", "canary", "--config", str(config), "--json")
    assert json.loads(out)["canary"]["share"] == 0.05


@pytest.mark.parametrize(("argv", "message"), [
    (["canary", "v1.1.0", "--share", "0"], "expected a share in (0, 1], found '0'"),
    (["canary", "v1.1.0", "--share", "1.5"], "expected a share in (0, 1], found '1.5'"),
    (["canary", "v1.1.0", "--share", "ten"], "expected a share in (0, 1], found 'ten'"),
    (["canary", "--share", "0.2"], "canary --share needs the VERSION"),
    (["canary", "v1.1.0", "--stop"], "canary --stop takes no VERSION and no --share"),
    (["canary", "v9.0.0"], "has no model 'v9.0.0'"),
    (["canary", "v1.0.0"], "is already production; a canary must be another version"),
    (["reproduce", "v9.9.9"], "has no model 'v9.9.9'"),
    (["promote", "v1.1.0", "--git-tag"], "--git-tag: not in a git checkout"),
])
def test_bad_canary_reproduce_and_tag_arguments_exit_2(cli_env, capsys, tmp_path, monkeypatch,
                                                       argv, message):
    monkeypatch.chdir(tmp_path)  # not a git checkout
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main(["models", *argv, "--config", str(cli_env)]))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    code, out, _ = run(capsys, "models", "show", "production", "--config", str(cli_env), "--json")
    assert json.loads(out)["version"] == "v1.0.0"  # nothing moved


def test_a_canary_that_failed_its_gates_needs_force(cli_env, capsys, trained, tmp_path):
    path = sidecar_path(tmp_path, trained.v2.model_id)
    sidecar = json.loads(path.read_text())
    sidecar["gate_passed"] = False
    sidecar["gates"][0]["passed"] = False
    path.write_text(json.dumps(sidecar))
    code, _, err = run(capsys, "models", "canary", "v1.1.0", "--config", str(cli_env))
    assert code == 2 and "failed its gates" in err and "--force" in err
    code, out, _ = run(capsys, "models", "canary", "v1.1.0", "--force", "--config", str(cli_env),
                       "--json")
    assert code == 0 and json.loads(out)["audit"]["details"]["forced"] is True


# ---------------------------------------------------------------- reproduce
def test_reproduce_is_byte_identical(cli_env, capsys, trained):
    code, out, err = run(capsys, "models", "reproduce", "v1.0.0", "--config", str(cli_env))
    assert code == 0, err
    assert "v1.0.0" in out and "reproduced byte-identical from 10 feature partition(s)" in out
    assert trained.v1.model_sha256 in out
    code, out, _ = run(capsys, "models", "reproduce", "production", "--config", str(cli_env),
                       "--json")
    report = json.loads(out)
    assert code == 0 and report["identical"] is True
    assert report["reproduced_sha256"] == report["recorded_sha256"] == trained.v1.model_sha256
    assert all(p["found_hash"] == p["recorded_hash"] for p in report["partitions"])


def test_reproduce_names_a_changed_partition(cli_env, capsys, trained, tmp_path):
    import pandas as pd

    path = sidecar_path(tmp_path, trained.v1.model_id)
    sidecar = json.loads(path.read_text())
    day = sorted(sidecar["lineage"]["features"])[2]
    original = sidecar["lineage"]["features"][day]["uri"]
    changed = pd.read_parquet(original).iloc[:-1]  # one row fewer
    copy = tmp_path / "tampered.parquet"
    changed.to_parquet(copy)
    sidecar["lineage"]["features"][day]["uri"] = str(copy)
    path.write_text(json.dumps(sidecar))
    code, out, _ = run(capsys, "models", "reproduce", "v1.0.0", "--config", str(cli_env))
    assert code == 1
    assert "NOT reproduced byte-identical" in out
    assert f"feature partition {day} ({copy}) content hash" in out and "changed since training" in out


def test_reproduce_says_what_differs(cli_env, capsys, trained, tmp_path):
    path = sidecar_path(tmp_path, trained.v1.model_id)
    sidecar = json.loads(path.read_text())
    sidecar["manifest"]["config"]["training"]["params"]["num_boost_round"] = 31
    sidecar["manifest"]["libraries"]["lightgbm"] = "4.6.0"
    path.write_text(json.dumps(sidecar))
    code, out, _ = run(capsys, "models", "reproduce", "v1.0.0", "--config", str(cli_env))
    assert code == 1
    assert "the recorded config does not match its recorded hash" in out
    assert "training parameters differ from the recorded ones: ['num_boost_round']" in out
    assert "environment: library lightgbm: recorded 4.6.0, now 4.7." in out
    assert "first difference: line " in out


def test_reproduce_needs_a_manifest(cli_env, capsys, trained, tmp_path):
    path = sidecar_path(tmp_path, trained.v1.model_id)
    sidecar = json.loads(path.read_text())
    sidecar["manifest"] = {}
    path.write_text(json.dumps(sidecar))
    code, _, err = run(capsys, "models", "reproduce", "v1.0.0", "--config", str(cli_env))
    assert code == 2 and "records no reproduction manifest" in err


# ---------------------------------------------------------------- git tag
def test_promote_with_git_tag_tags_the_recorded_commit(cli_env, capsys, trained, tmp_path,
                                                       monkeypatch):
    commit = (trained.v2.sidecar["manifest"].get("git") or {}).get("commit")
    if not commit:
        pytest.skip("the models were not trained in a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", "--shared", str(REPO), str(clone)],
                   check=True, capture_output=True, timeout=120)
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=clone).returncode:
        pytest.skip("the recorded commit is not on a branch the clone has")
    monkeypatch.chdir(clone)
    for var, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@example.com"),
                       ("GIT_COMMITTER_NAME", "t"), ("GIT_COMMITTER_EMAIL", "t@example.com")):
        monkeypatch.setenv(var, value)
    code, out, err = run(capsys, "models", "promote", "v1.1.0", "--git-tag", "--config", str(cli_env))
    assert code == 0, err
    assert f"tagged {commit[:12]} as model-v1.1.0" in out
    tagged = subprocess.run(["git", "rev-parse", "model-v1.1.0^{commit}"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert tagged == commit
    message = subprocess.run(["git", "tag", "-l", "--format=%(contents)", "model-v1.1.0"],
                             cwd=clone, capture_output=True, text=True, check=True).stdout
    assert trained.v2.model_sha256 in message
    # promoting again is fine (the tag is already there); a tag elsewhere is refused up front
    assert run(capsys, "models", "promote", "v1.1.0", "--git-tag", "--config", str(cli_env))[0] == 0
    subprocess.run(["git", "tag", "-f", "model-v1.0.0", f"{commit}~1"], cwd=clone, check=True,
                   capture_output=True)
    code, _, err = run(capsys, "models", "promote", "v1.0.0", "--git-tag", "--config", str(cli_env))
    assert code == 2 and "tag model-v1.0.0 already exists at" in err
    code, out, _ = run(capsys, "models", "show", "production", "--config", str(cli_env), "--json")
    assert json.loads(out)["version"] == "v1.1.0"


def test_canary_moves_are_alerted(cli_env, capsys, webhook, monkeypatch):
    monkeypatch.setenv("ALERT_WEBHOOK_URL", webhook.url)
    assert run(capsys, "models", "canary", "v1.1.0", "--share", "0.3", "--config", str(cli_env))[0] == 0
    assert run(capsys, "models", "canary", "--stop", "--config", str(cli_env))[0] == 0
    assert webhook.events() == ["canary", "canary"]
    titles = [r["ml_assets"]["title"] for r in webhook.received]
    assert titles == ["canary start: v1.1.0", "canary stop: v1.1.0"]
