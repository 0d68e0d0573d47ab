"""`ml-assets release` (make release): each stage must pass before the next; nothing is promoted
unless all do; a promotion is audited and tagged model-vX.Y.Z in a git checkout."""

from __future__ import annotations

import json
import subprocess

import pytest

from ml_assets import cli
from ml_assets.commands.models import store_for_env
from ml_assets_tests.helpers import REPO, flights_dict, write_config
from ml_assets_tests.test_cli import env  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

ARGS = ["--start", "2013-01-01", "--end", "2013-01-15", "--as-of", "2013-01-12", "--json"]


@pytest.fixture
def checkout(env, monkeypatch):  # noqa: F811
    """A throwaway clone of this repository (the model records the commit it was trained from,
    which the tag goes on)."""
    repo = env / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", "--shared", str(REPO), str(repo)],
                   check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    if subprocess.run(["git", "cat-file", "-e", f"{head}^{{commit}}"], cwd=repo).returncode:
        pytest.skip("this checkout's HEAD is not on a branch a clone has")
    for cmd in (["git", "config", "user.email", "ci@example.com"], ["git", "config", "user.name", "ci"]):
        subprocess.run(cmd, cwd=repo, check=True)
    monkeypatch.chdir(repo)
    return repo


def _release(capsys, config, *extra):
    code = cli.main(["release", "--config", str(config), *ARGS, *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def _tags(repo) -> list[str]:
    return subprocess.run(["git", "tag"], cwd=repo, capture_output=True, text=True).stdout.split()


def test_all_stages_pass_then_promote_audit_and_tag(checkout, capsys):
    config = write_config(checkout.parent / "flights.yaml", flights_dict())
    code, report, err = _release(capsys, config)
    assert code == 0, err
    assert list(report["stages"]) == ["validate", "train", "evaluate", "deploy"]
    assert report["stages"]["evaluate"]["action"] == "promote"
    assert report["stages"]["deploy"]["production"] == "v1.0.0"
    assert _tags(checkout) == ["model-v1.0.0"]
    tagged = subprocess.run(["git", "rev-parse", "model-v1.0.0^{commit}"], cwd=checkout,
                            capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    assert tagged == head  # the commit the model was trained from
    audit = store_for_env().audit("flights")
    assert audit[-1]["action"] == "promote" and audit[-1]["actor"].startswith("release:")
    # again: the same candidate is production already; nothing to deploy, exit 0
    code, report, _ = _release(capsys, config)
    assert code == 0 and report["stages"]["evaluate"]["action"] == "keep"
    assert "deploy" not in report["stages"]


def test_a_failing_gate_stops_before_anything_is_promoted(checkout, capsys):
    config = write_config(checkout.parent / "flights.yaml",
                          flights_dict(gates={"roc_auc": {"min": 0.99}}))
    code, report, err = _release(capsys, config)
    assert code == 1 and report["failed_stage"] == "train"
    assert "gate_roc_auc" in report["error"] and "nothing promoted" in err
    assert store_for_env().aliases("flights").model_id("production") is None
    assert _tags(checkout) == []


def test_a_failing_data_check_stops_before_training(checkout, capsys):
    config = write_config(checkout.parent / "flights.yaml",
                          flights_dict(checks={"min_rows_per_day": 100_000}))
    code, report, _ = _release(capsys, config)
    assert code == 1 and report["failed_stage"] == "validate"
    assert "flights/raw:row_count observed 690" in report["error"]
    assert store_for_env().versions("flights") == []  # nothing was trained
    assert _tags(checkout) == []


def test_a_challenger_worse_than_the_champion_is_not_deployed(checkout, capsys):
    good = write_config(checkout.parent / "flights.yaml", flights_dict())
    assert _release(capsys, good)[0] == 0
    weak = write_config(checkout.parent / "weak.yaml", flights_dict(
        gates={"roc_auc": {"min": 0.4}},
        training={"params": {"num_boost_round": 2, "num_leaves": 2, "seed": 7}}))
    code, report, _ = _release(capsys, weak, "--as-of", "2013-01-14")
    assert code == 1 and report["failed_stage"] == "evaluate"
    assert "worse than champion v1.0.0" in report["error"]
    assert store_for_env().resolve("flights", "production").version == "v1.0.0"
    assert _tags(checkout) == ["model-v1.0.0"]


def test_outside_a_git_checkout_no_tag_is_made(env, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(env)
    config = write_config(env / "flights.yaml", flights_dict())
    code, report, _ = _release(capsys, config)
    assert code == 0 and report["stages"]["deploy"]["tag"].startswith("no tag: --git-tag: not in a git checkout")


@pytest.mark.parametrize(("argv", "message"), [
    (["--until", "ship"], "invalid choice: 'ship'"),
    (["--start", "2013-02-30"], "expected a date YYYY-MM-DD"),
    (["--pipeline", "nope"], "--pipeline 'nope': no such pipeline"),
])
def test_bad_release_arguments_exit_2(env, capsys, argv, message):  # noqa: F811
    config = write_config(env / "flights.yaml", flights_dict())
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main(["release", "--config", str(config), *argv]))
    assert exc.value.code == 2 and message in capsys.readouterr().err
